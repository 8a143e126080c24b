"""The VirtualService's mirrorPercentage: a share of requests is copied, all are served by v1."""

from __future__ import annotations

import math

import pytest

N = 200
PATHS = ["/status/200", "/headers"] * (N // 2)


@pytest.fixture(scope="module")
def half(open_mesh):
    with open_mesh(mirror_percentage=50.0) as m:
        yield m


def test_about_half_of_the_requests_are_mirrored(half):
    half.clear()
    before = half.received()
    replies = half.send_paths(PATHS)
    assert [r.status for r in replies] == [200] * N
    # There is no target count to wait for: wait until the relay's count stops moving.
    mirrored = half.wait_for(lambda: half.received().v2 - before.v2, lambda _n: True)
    assert half.received().v1 - before.v1 == N
    # Binomial(200, 0.5): 30%..70% is more than five standard deviations either side.
    assert 0.30 * N <= mirrored <= 0.70 * N, mirrored
    overview = half.wait_totals(mirrored)
    assert sum(e["total"] for e in overview.values()) == mirrored
    assert set(overview) <= {"GET /status/:id", "GET /headers"}


def test_zero_percent_mirrors_nothing(open_mesh):
    with open_mesh(mirror_percentage=0.0) as none:
        before = none.received()
        replies = none.send_paths(["/headers", "/json", "/uuid"] * 3)
        assert [r.status for r in replies] == [200] * 9
        served = none.wait_for(lambda: none.received().v1 - before.v1, lambda n: n >= 9)
        assert served == 9
        assert none.received().v2 - before.v2 == 0


def test_twelve_and_a_half_percent_is_binomial(open_mesh):
    n, p = 800, 0.125
    with open_mesh(mirror_percentage=12.5) as eighth:
        before = eighth.received()
        replies = eighth.send_paths(["/status/200"] * n)
        assert [r.status for r in replies] == [200] * n
        mirrored = eighth.wait_for(lambda: eighth.received().v2 - before.v2, lambda _n: True)
        assert eighth.received().v1 - before.v1 == n
        # Binomial(800, 0.125): mean 100, sigma 9.35; 4 sigma either side is 63..137.
        sigma = math.sqrt(n * p * (1 - p))
        assert n * p - 4 * sigma <= mirrored <= n * p + 4 * sigma, mirrored
        print(f"mirrorPercentage 12.5: {mirrored} of {n} requests mirrored")
        if hasattr(eighth.mesh, "envoy_mirror_counters"):
            # Envoy's own count of the copies it made agrees with what the relay received.
            counters, = eighth.envoy_mirror_counters().values()
            assert counters["upstream_rq_2xx"] == eighth.received().v2
