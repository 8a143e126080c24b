import math

import pytest

from diffproxy.noise import FieldStats, classify


def test_diffy_example_noise_cancels_most_raw_differences():
    stats = classify(raw=50, noise=45, total=1000)
    assert math.isclose(stats.relative_difference, 5 / 95 * 100)
    assert round(stats.relative_difference, 2) == 5.26
    assert math.isclose(stats.absolute_difference, 0.5)
    assert stats.signal is False
    assert (stats.differences, stats.noise) == (50, 45)


def test_diffy_example_no_noise_is_signal():
    stats = classify(raw=50, noise=0, total=1000)
    assert stats.relative_difference == 100.0
    assert stats.absolute_difference == 5.0
    assert stats.signal is True


def test_nothing_differs():
    assert classify(0, 0, 1000) == FieldStats(0, 0, 0.0, 0.0, False)


def test_total_zero_gives_zero_absolute():
    stats = classify(3, 0, 0)
    assert stats.absolute_difference == 0.0
    assert stats.relative_difference == 100.0
    assert stats.signal is False


def test_more_noise_than_raw_is_never_signal():
    stats = classify(raw=1, noise=100, total=200)
    assert stats.relative_difference > 20 and stats.absolute_difference > 0.03
    assert stats.signal is False


def test_thresholds_are_strict():
    # relative exactly 20: raw=6, noise=4 -> 2/10 = 20%
    at_relative = classify(6, 4, 10, relative_threshold=20.0, absolute_threshold=0.0)
    assert at_relative.relative_difference == 20.0
    assert at_relative.signal is False
    assert classify(6, 4, 10, relative_threshold=19.99, absolute_threshold=0.0).signal is True
    # absolute exactly 5: raw=5, noise=0, total=100
    at_absolute = classify(5, 0, 100, relative_threshold=0.0, absolute_threshold=5.0)
    assert at_absolute.absolute_difference == 5.0
    assert at_absolute.signal is False
    assert classify(5, 0, 100, relative_threshold=0.0, absolute_threshold=4.99).signal is True


def test_default_absolute_threshold_needs_enough_requests():
    # one differing request in 10000 is 0.01% < 0.03%
    assert classify(1, 0, 10000).signal is False
    assert classify(4, 0, 10000).signal is True


@pytest.mark.parametrize("args", [(-1, 0, 10), (0, -1, 10), (0, 0, -1)])
def test_negative_counts_are_rejected(args):
    with pytest.raises(ValueError, match="negative"):
        classify(*args)


# Endpoint verdicts (issue 12) ---------------------------------------------------------------

from diffproxy.model import TargetHealth  # noqa: E402
from diffproxy.noise import verdict  # noqa: E402


def _fields(*pairs, total):
    return [classify(raw, noise, total) for raw, noise in pairs]


def test_verdict_same_noise_signal():
    assert verdict(100, 0, []) == "same"
    assert verdict(100, 0, _fields((50, 45), total=100)) == "noise"
    assert verdict(100, 0, _fields((50, 45), (50, 0), total=100)) == "signal"


def test_noise_only_field_is_noise_not_signal():
    assert verdict(10, 0, _fields((0, 10), total=10)) == "noise"


def test_baseline_failure_beats_noise_but_not_signal():
    # 30 of 100 requests: the primary failed; the candidate agreed with the healthy master
    assert verdict(100, 30, _fields((0, 30), total=100)) == "baseline_failure"
    # a few failures among many answers are not the verdict
    assert verdict(100, 2, _fields((0, 2), total=100)) == "noise"
    assert verdict(100, 2, [], baseline_failure_percent=1.0) == "baseline_failure"
    # a change the healthy master confirms is signal whatever the baseline did
    assert verdict(100, 30, _fields((0, 30), (40, 0), total=100)) == "signal"


def test_insufficient_below_min_requests():
    assert verdict(3, 0, [], min_requests=5) == "insufficient"
    assert verdict(5, 0, [], min_requests=5) == "same"
    assert verdict(6, 2, [], min_requests=5, baseline_failure_percent=50.0) == "baseline_failure"


def test_health_is_a_rolling_window_not_the_last_request():
    h = TargetHealth(address="x")
    for _ in range(19):
        h.record(True, None)
    h.record(False, "reset: peer reset")
    assert h.healthy is True and h.last_error == "reset: peer reset"
    for _ in range(9):
        h.record(False, "reset: again")
    assert h.healthy is True  # 10 of 20 failed: not more than half
    h.record(False, "reset: again")
    assert h.healthy is False
    assert h.as_json()["window"]["failures"] == 11 and h.as_json()["window"]["outcomes"] == 20
    dead = TargetHealth(address="y")
    dead.record(False, "refused: nobody listens")
    assert dead.healthy is False  # a target that never answered is down from the first try
