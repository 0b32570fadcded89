"""The statistics behind the alert thresholds, in one place.

Prometheus computes the thresholds (deploy/prometheus/rules/recording.yml, so that they hold across replicas); this
module states the same formulas in Python, with the constants the rules must use, and
tests/monitoring/test_thresholds.py checks both the constants in the rules and the false-alarm rate the formulas give
on simulated traffic.

Every threshold is "what a window of n rows without a fault exceeds once in a million evaluations, plus the
smallest change worth acting on", so that the false-alarm rate does not depend on traffic. A reference estimated
from m rows (the training profile, the validation figures) is itself noisy: its share of the noise is the 1/m term.
"""

from __future__ import annotations

import math

# One-sided standard normal quantile at 1 - 1e-6: a bound exceeded once in a million evaluations without a fault.
Z = 4.753
# The smallest PSI worth a ticket, above the noise: the thresholds are PSI_FLOOR + the noise's 1 - 1e-6 quantile.
PSI_FLOOR = 0.1
# ClassifierDataQuality: a fault is worth a ticket when it hits more than this share of the rows.
INPUT_ISSUE_SHARE = 0.05
# ClassifierEstimatedAccuracyDrop and ClassifierRealizedAccuracyLow: the smallest accuracy drop worth acting on.
ACCURACY_DROP = 0.05


def chi2_quantile(k: float) -> float:
    """The chi-square quantile at 1 - 1e-6 for k degrees of freedom, by the Wilson-Hilferty approximation (PromQL
    has no chi-square quantile): a little above the exact one (46.0 against 44.8 at k = 9; 27.5 against 23.9 at
    k = 1), so a little fewer false alarms than stated."""
    return k * (1 - 2 / (9 * k) + Z * math.sqrt(2 / (9 * k))) ** 3


def psi_threshold(bins: int, n: float, m: float) -> float:
    """The PSI threshold of a window of `n` rows against a reference of `m` rows over `bins` bins with a nonzero
    reference share: without drift the PSI is about chi2 with bins - 1 degrees of freedom times (1/n + 1/m)."""
    k = max(bins - 1, 1)  # one bin: no freedom, but a threshold as for two rather than none
    return PSI_FLOOR + chi2_quantile(k) * (1 / n + 1 / m)


def share_noise(p0: float, n: float, m: float = math.inf) -> float:
    """How far the share of `n` rows strays above or below the true share `p0` once in a million evaluations (normal
    approximation of the binomial); `m`: the rows `p0` was itself estimated from."""
    return Z * math.sqrt(p0 * (1 - p0) * (1 / n + 1 / m))


def smoothed_accuracy(p0: float, m: float) -> float:
    """An accuracy measured on `m` rows shrunk by one right and one wrong row, for the variance only: `m` rows all
    right (small calibration sets) would otherwise claim no noise at all."""
    return (p0 * m + 1) / (m + 2)


def collapse_threshold(p0: float, n: float, m: float) -> float:
    """ClassifierClassCollapse: a label took more than half of the decisions that went to the others on validation
    (share 0.1 -> 0.55), beyond the noise of `n` decisions and of the `m` validation rows."""
    return (1 + p0) / 2 + share_noise(p0, n, m)


def input_issue_threshold(n: float) -> float:
    """ClassifierDataQuality: a fault in more than INPUT_ISSUE_SHARE of the rows, beyond the noise of `n` rows."""
    return INPUT_ISSUE_SHARE + share_noise(INPUT_ISSUE_SHARE, n)


def allowed_accuracy_drop(p0: float, n: float, m: float) -> float:
    """How far accuracy on `n` rows may fall below the validation accuracy `p0` of `m` rows before the accuracy alerts
    fire: ACCURACY_DROP beyond the noise of both."""
    return ACCURACY_DROP + share_noise(smoothed_accuracy(p0, m), n, m)
