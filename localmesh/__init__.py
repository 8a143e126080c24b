"""The mirroring demo as real processes on loopback (and, with `--backend kind`, on kind).

`LocalMesh` is the programmatic entry: a context manager that starts httpbin v1,
httpbin-master, httpbin-candidate, the diff proxy, the nginx relay and the caller's Envoy
sidecar (configured as istiod would), all from the same `topology.Topology` the Pulumi
program uses.
"""

from localmesh.errors import MeshError
from localmesh.stack import Endpoints, LocalMesh, LocalPorts, MeshSettings, Received

__all__ = ["Endpoints", "LocalMesh", "LocalPorts", "MeshError", "MeshSettings", "Received"]
