"""The VirtualService's mirrorPercentage: a share of requests is copied, all are served by v1."""

from __future__ import annotations

import pytest

N = 200
PATHS = ["/status/200", "/headers"] * (N // 2)


@pytest.fixture(scope="module")
def half(open_mesh):
    with open_mesh(mirror_percentage=50.0, host_form="plain") as m:
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
    with open_mesh(mirror_percentage=0.0, host_form="plain") as none:
        before = none.received()
        replies = none.send_paths(["/headers", "/json", "/uuid"] * 3)
        assert [r.status for r in replies] == [200] * 9
        served = none.wait_for(lambda: none.received().v1 - before.v1, lambda n: n >= 9)
        assert served == 9
        assert none.received().v2 - before.v2 == 0
