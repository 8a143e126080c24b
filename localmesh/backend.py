"""What the e2e suite needs of a mesh, whichever backend runs it: `stack.LocalMesh`
(real processes on loopback) and `kind.KindMesh` (a kind cluster) both provide it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from localmesh import traffic
from localmesh.stack import Received


@runtime_checkable
class MeshBackend(Protocol):
    backend: str  # "local" or "kind"

    @property
    def api_url(self) -> str:
        """The diff proxy's http port (API and console), reachable from this machine."""

    @property
    def mirror_percentage(self) -> float: ...

    @property
    def entry_host(self) -> str:
        """The Host callers send to the mesh's entry."""

    @property
    def host_form(self) -> str:
        """How the mirrored copy's Host looks ("shadow" or "plain", see `sidecar`)."""

    def send(self, path: str, n: int = 1) -> list[traffic.Reply]: ...

    def send_paths(self, paths: list[str], interval: float = 0.0) -> list[traffic.Reply]:
        """GET each path from the caller's side, `interval` seconds apart."""

    def received(self) -> Received:
        """Requests each backend version (v1 primary, v2 mirror target) has received."""

    def relay_hosts(self) -> list[str] | None:
        """Host headers the relay saw on mirrored copies (None where it cannot be read)."""

    def kill_candidate(self) -> None: ...
