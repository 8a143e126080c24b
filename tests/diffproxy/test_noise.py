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
