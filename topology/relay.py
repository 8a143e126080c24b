"""The nginx relay's `default.conf`, rendered once for the cluster's ConfigMap and the local stack."""

from __future__ import annotations


def render_relay_conf(listen: int, upstream: str, listen_address: str = "") -> str:
    """`upstream` is `host:port` of the diff proxy's proxy listener.

    HTTP/1.1 because Envoy answers HTTP/1.0 with 426 Upgrade Required, and no Host override:
    the caller's Host must survive so the diff proxy sees what the mesh sent.
    """
    bind = f"{listen_address}:{listen}" if listen_address else str(listen)
    return f"""server {{
    listen {bind};

    location / {{
        proxy_pass http://{upstream}/;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_headers on;
        proxy_buffering off;
        client_max_body_size 16m;
    }}
}}
"""
