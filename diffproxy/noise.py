"""Diffy's rule for telling a real difference (signal) from noise on one field.

Primary and secondary run the same code, so a field that differs between them (noise)
is non-deterministic; a field is only signal when primary-vs-candidate differs clearly
more often than that, both relative to the noise and in absolute terms.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldStats:
    differences: int  # primary vs candidate ("raw")
    noise: int  # primary vs secondary
    relative_difference: float  # percent
    absolute_difference: float  # percent of all requests to the endpoint
    signal: bool


def classify(raw: int, noise: int, total: int, relative_threshold: float = 20.0,
             absolute_threshold: float = 0.03) -> FieldStats:
    """relative = |raw-noise| / (raw+noise) * 100 (0 when both are 0),
    absolute = |raw-noise| / total * 100 (0 when total is 0);
    signal iff raw > noise and both exceed their thresholds (strictly)."""
    for key, value in (("raw", raw), ("noise", noise), ("total", total)):
        if value < 0:
            raise ValueError(f"{key} must not be negative, got {value}")
    delta = abs(raw - noise)
    relative = delta / (raw + noise) * 100.0 if raw + noise else 0.0
    absolute = delta / total * 100.0 if total else 0.0
    signal = raw > noise and relative > relative_threshold and absolute > absolute_threshold
    return FieldStats(differences=raw, noise=noise, relative_difference=relative,
                      absolute_difference=absolute, signal=signal)


def verdict(total: int, baseline_failures: int, fields: list[FieldStats], min_requests: int = 1,
            baseline_failure_percent: float = 20.0) -> str:
    """One endpoint's verdict, in this order:

    - `signal`: some field is signal by Diffy's rule (candidate evidence wins, whatever else
      happened: a baseline failure never hides a change the healthy master confirms);
    - `baseline_failure`: primary or secondary failed on their own (and the candidate did
      not) on more than `baseline_failure_percent` of the requests, or on so many that fewer
      than `min_requests` remain: the baseline is no evidence either way;
    - `insufficient`: fewer than `min_requests` requests the baseline answered;
    - `noise`: fields differed, none clearly more often than between the two masters;
    - `same`: nothing differed.
    """
    if any(f.signal for f in fields):
        return "signal"
    comparable = total - baseline_failures
    if baseline_failures and (comparable < min_requests
                              or baseline_failures * 100.0 / total > baseline_failure_percent):
        return "baseline_failure"
    if comparable < min_requests:
        return "insufficient"
    if any(f.differences or f.noise for f in fields):
        return "noise"
    return "same"
