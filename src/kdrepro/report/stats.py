"""The statistics the claims report judges with: a Student-t interval for the mean of paired differences
over seeds, and a bootstrap over seeds for statistics that are not a mean (which option ranks first).

The t quantile is computed here (the regularized incomplete beta function, inverted by bisection) rather
than taken from scipy, which the package does not otherwise need.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Mapping

import numpy as np

BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0  # fixed, so that a report rendered twice from the same runs reads the same


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point: use the symmetry
        return 1.0 - incomplete_beta(1.0 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * result


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2, 0.5)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The t value below which a share `p` (0.5 <= p < 1) of Student's t with `df` degrees of freedom lies."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def mean_interval(values: list[float], confidence: float) -> tuple[float, float, float]:
    """The mean of `values` and its two-sided Student-t interval at `confidence` (NaN bounds under two values)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_quantile((1 + confidence) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def bootstrap_share(columns: Mapping[str, list[float]], holds: Callable[[dict[str, float]], bool],
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> float:
    """The share of bootstrap resamples of the seeds (with replacement, the same seeds for every column, so the
    pairing is kept) in which `holds` is true of the columns' means."""
    names = list(columns)
    table = np.array([columns[name] for name in names], dtype=float).T  # seeds x options
    picks = np.random.default_rng(seed).integers(0, len(table), size=(resamples, len(table)))
    means = table[picks].mean(axis=1)  # resamples x options
    return sum(bool(holds(dict(zip(names, row.tolist())))) for row in means) / resamples
