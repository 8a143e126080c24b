"""nginx configuration for the stand-in of the caller's Envoy sidecar.

It applies the same rule as the VirtualService, from the same Topology field: every request
goes to v1, and `mirror_percentage` percent of them are also copied, fire-and-forget, to
v2 (the relay). The copy's Host follows the Istio version being imitated:
before 1.28 Envoy appends `-shadow` to the host (`svc:44134` -> `svc-shadow:44134`);
from 1.28 the Host is left as the caller sent it.
"""

from __future__ import annotations

from localmesh.errors import MeshError
from topology import Topology

HOST_FORMS = ("shadow", "plain")
DEFAULT_HOST_FORM = "plain"
MIRROR_LOCATION = "/.localmesh-mirror"


def shadow_host(host: str) -> str:
    """Istio's pre-1.28 rule, for tests and the summary: `a:1` -> `a-shadow:1`."""
    name, sep, port = host.partition(":")
    return f"{name}-shadow{sep}{port}"


def _percent(value: float) -> str:
    # split_clients reads two decimals; Istio's field is a double, so round to what nginx can express.
    return f"{round(value, 2):.2f}".rstrip("0").rstrip(".")


def render_sidecar_conf(topology: Topology, listen: int, primary: str, mirror: str,
                        host_form: str = DEFAULT_HOST_FORM, listen_address: str = "127.0.0.1") -> str:
    """`primary` and `mirror` are `host:port` of v1 and of the relay (v2)."""
    if host_form not in HOST_FORMS:
        raise MeshError(f"--istio-host-form must be one of {', '.join(HOST_FORMS)}, got {host_form!r}")
    percentage = round(topology.mirror_percentage, 2)

    if host_form == "shadow":
        host_map = """map $http_host $localmesh_mirror_host {
    "~^(?<mesh_host>[^:]+)(?<mesh_port>:[0-9]+)?$" "${mesh_host}-shadow${mesh_port}";
    default $http_host;
}
"""
    else:
        host_map = """map $http_host $localmesh_mirror_host {
    default $http_host;
}
"""
    if percentage >= 100.0:
        sampling, gate = "", ""
    else:
        # $request_id is random per request, so hashing it samples independently per request.
        sampling = f"""split_clients "${{request_id}}" $localmesh_mirrored {{
    {_percent(percentage)}% "1";
    * "";
}}
""" if percentage > 0 else ""
        gate = """        if ($localmesh_mirrored = "") {
            return 204;
        }
""" if percentage > 0 else ""
    mirror_directives = (f"""        mirror {MIRROR_LOCATION};
        mirror_request_body on;
""" if percentage > 0 else "        mirror off;\n")
    mirror_location = f"""
    location = {MIRROR_LOCATION} {{
        internal;
{gate}        proxy_pass http://{mirror}$request_uri;
        proxy_http_version 1.1;
        proxy_set_header Host $localmesh_mirror_host;
        proxy_set_header X-Request-Id $request_id;
    }}
""" if percentage > 0 else ""

    return f"""# Stand-in for the Envoy sidecar of the caller: route 100% to {topology.service} v1,
# mirror {_percent(percentage)}% to v2 (mirrorPercentage, as in the VirtualService); Host form: {host_form}.
{host_map}{sampling}
server {{
    listen {listen_address}:{listen};

    location / {{
{mirror_directives}        proxy_pass http://{primary};
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        # Envoy gives the request and its mirrored copy the same x-request-id.
        proxy_set_header X-Request-Id $request_id;
        proxy_buffering off;
        client_max_body_size 16m;
    }}
{mirror_location}}}
"""
