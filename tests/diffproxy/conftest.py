"""Real backends and a real proxy, started once per session.

`backends`: httpbin twice (primary, secondary: separate processes) and the candidate
(`candidate.app:app`), each under gunicorn on a free loopback port.
`shared_proxy`: `python -m diffproxy` in front of them, configured as the demo does.
`proxy`: the shared proxy, settled and cleared, for tests that count.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from diffproxy.client import ApiClient
from tests.support import diffapi, procs
from topology.model import DEFAULT


@dataclass(frozen=True)
class Backends:
    primary: procs.Proc
    secondary: procs.Proc
    candidate: procs.Proc


@pytest.fixture(scope="session")
def proc_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def backends(proc_logs):
    started: list[procs.Proc] = []
    try:
        for start in (procs.start_httpbin, procs.start_httpbin, procs.start_candidate):
            started.append(start(log_dir=proc_logs, wait=False))
        for proc in started:
            proc.wait_until(proc.url + "/get", timeout=30)
        yield Backends(*started)
    finally:
        for proc in started:
            proc.stop()


def demo_flags() -> list[str]:
    """Our flags the demo passes too (thresholds, ignored fields), from the topology."""
    return [f"-ignore.fields={','.join(DEFAULT.ignore_fields)}",
            f"-threshold.relative={DEFAULT.thresholds.relative:g}",
            f"-threshold.absolute={DEFAULT.thresholds.absolute:g}"]


def start_proxy(backends: Backends, store_path, extra=(), candidate: str | None = None,
                log_dir=None, ports=None) -> procs.DiffProxyProc:
    return procs.start_diffproxy(
        primary=backends.primary.address, secondary=backends.secondary.address,
        candidate=candidate or backends.candidate.address, store_path=store_path,
        extra=[*demo_flags(), *extra], log_dir=log_dir, ports=ports)


@pytest.fixture(scope="session")
def shared_proxy(backends, tmp_path_factory, proc_logs):
    proxy = start_proxy(backends, tmp_path_factory.mktemp("shared") / "results.sqlite",
                        log_dir=proc_logs)
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(shared_proxy):
    """The shared proxy with no results: earlier tests' comparisons settled, then cleared."""
    diffapi.wait_idle(shared_proxy.admin_url)
    ApiClient(shared_proxy.api_url).clear()
    yield shared_proxy
    assert shared_proxy.alive(), f"proxy died:\n{shared_proxy.log()}"


@pytest.fixture
def client():
    with httpx.Client(timeout=10.0) as c:
        yield c


@pytest.fixture(scope="session")
def faults():
    """Three raw-socket targets that misbehave on request (see `faultserver`)."""
    from .faultserver import FaultServer

    with FaultServer(limit=FAULT_LIMIT, slow=FAULT_SLOW) as server:
        yield server


FAULT_LIMIT = 64 * 1024  # -maxResponseSize of proxies in front of `faults`
# -target.timeout of proxies in front of `faults`. Roomy: on a loaded 2-core machine a
# healthy target can take far more than 500 ms, and a case must not turn into a timeout
# (or a 504 for a request the test counts as answered) because the machine was busy.
FAULT_TARGET_TIMEOUT = 5.0
FAULT_SLOW = FAULT_TARGET_TIMEOUT + 3.0  # the `slow` fault: always past the timeout


def start_fault_proxy(faults, store_path, extra=(), log_dir=None) -> procs.DiffProxyProc:
    return procs.start_diffproxy(
        primary=faults.address("primary"), secondary=faults.address("secondary"),
        candidate=faults.address("candidate"), store_path=store_path,
        extra=[f"-target.timeout={FAULT_TARGET_TIMEOUT:g}s", f"-maxResponseSize={FAULT_LIMIT}", *extra],
        log_dir=log_dir)
