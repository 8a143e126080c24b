"""The nginx relay's `default.conf`, rendered once for the cluster's ConfigMap and the local stack."""

from __future__ import annotations


def render_relay_conf(listen: int, upstream: str, listen_address: str = "") -> str:
    """`upstream` is `host:port` of the diff proxy's proxy listener.

    `proxy_pass` has no URI part, so nginx forwards the request line's path exactly as the
    caller sent it; with one (even `/`) nginx would send its normalized path instead
    (`/anything/a%2Fb//c/../d` as `/anything/a/b/d`), and the diff proxy would compare
    responses to a different request than v1 answered.
    HTTP/1.1 because Envoy answers HTTP/1.0 with 426 Upgrade Required. No Host override:
    nginx then sends the upstream's own name, which is what the relay's sidecar routes by;
    forcing the caller's (mirrored) Host would stop Istio from matching the diff proxy.
    """
    bind = f"{listen_address}:{listen}" if listen_address else str(listen)
    return f"""server {{
    listen {bind};

    location / {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_headers on;
        proxy_buffering off;
        client_max_body_size 16m;
    }}
}}
"""
