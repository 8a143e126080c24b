"""The local stack's Prometheus: Debian's `prometheus`, scraping the diff proxy's admin port
and the caller's Envoy, with the release's rules loaded (all from topology/monitoring.py)."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localmesh.errors import MeshError
from topology.monitoring import LatencyThresholds, Scope, rules_file, scrape_config


def find_prometheus(explicit: str | None = None,
                    which: Callable[[str], str | None] = shutil.which) -> str:
    found = explicit or which("prometheus")
    if not found:
        raise MeshError("prometheus not found: install Debian's prometheus package "
                        "(scripts/system-deps.sh prometheus)")
    return found


@dataclass(frozen=True)
class PrometheusInstance:
    folder: Path
    binary: str
    port: int
    listen_address: str

    @property
    def url(self) -> str:
        return f"http://{self.listen_address}:{self.port}"

    def write(self, scope: Scope, thresholds, latency: LatencyThresholds,
              diffproxy_admin: str, envoy_admin: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "rules.yml").write_text(rules_file(scope, thresholds, latency))
        config = self.folder / "prometheus.yml"
        config.write_text(scrape_config(diffproxy_admin, envoy_admin, scope,
                                        str(self.folder / "rules.yml")))
        return config

    def argv(self) -> list[str]:
        return [self.binary, f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address={self.listen_address}:{self.port}",
                # Debian's build looks for its console templates under /etc; none are used.
                f"--web.console.templates={self.folder / 'consoles'}",
                f"--web.console.libraries={self.folder / 'console_libraries'}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn"]


def query(url: str, promql: str, timeout: float = 10.0) -> list[dict]:
    """An instant query's result vector (`[{"metric": {...}, "value": [t, "v"]}, ...]`)."""
    address = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            body = json.loads(response.read())
    except OSError as exc:
        raise MeshError(f"Prometheus at {url} did not answer {promql!r}: {exc}") from None
    if body.get("status") != "success":
        raise MeshError(f"Prometheus rejected {promql!r}: {body.get('error')}")
    return body["data"]["result"]
