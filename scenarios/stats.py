"""Numbers you can trust: medians with bootstrap confidence intervals, and
comparisons decided by a significance test, not by medians alone."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ALPHA", "Comparison", "Estimate", "compare", "median_ci", "percentile"]

ALPHA = 0.05  # two-sided significance level of compare()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of one sample; None for none."""
    if not values:
        return None
    data = sorted(values)
    return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]


@dataclass(frozen=True)
class Estimate:
    median: float
    low: float  # 95% confidence interval of the median
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.median:.4g} [{self.low:.4g}, {self.high:.4g}]"


def median_ci(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Estimate:
    """The median and a percentile-bootstrap confidence interval for it.
    Deterministic for a given seed; with one value the interval is that value."""
    data = [v for v in values if v is not None and not math.isnan(v)]
    if not data:
        raise ValueError("median_ci needs at least one value")
    med = statistics.median(data)
    if len(data) == 1:
        return Estimate(med, med, med, 1)
    rng = random.Random(seed)
    n = len(data)
    boots = sorted(statistics.median(rng.choices(data, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = boots[math.floor(tail * (resamples - 1))]
    high = boots[math.ceil((1 - tail) * (resamples - 1))]
    return Estimate(med, low, high, n)


@dataclass(frozen=True)
class Comparison:
    verdict: str  # "faster", "slower" or "no significant difference" (for higher-is-better)
    ratio: float  # median(a) / median(b)
    p_value: float
    a: Estimate
    b: Estimate

    def __str__(self) -> str:
        if self.verdict == "no significant difference":
            return f"no significant difference (ratio {self.ratio:.2f}, p={self.p_value:.3f})"
        return f"{self.verdict}: {self.ratio:.2f}x (p={self.p_value:.3f})"


def compare(
    a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True, alpha: float = ALPHA
) -> Comparison:
    """Is ``a`` better than ``b``? Two-sided Mann-Whitney U test on the repeats.
    With 5 repeats each the smallest possible p is 0.008, so 5 is the least that
    can show a difference at 5%; 3 against 3 never can (p >= 0.1)."""
    from scipy.stats import mannwhitneyu

    a = [v for v in a if v is not None and not math.isnan(v)]
    b = [v for v in b if v is not None and not math.isnan(v)]
    ea, eb = median_ci(a), median_ci(b)
    if eb.median:
        ratio = ea.median / eb.median
    else:
        ratio = 1.0 if not ea.median else math.inf
    if len(set(a)) == 1 and set(a) == set(b):
        p = 1.0
    else:
        p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if not p < alpha:  # NaN included: no evidence, no verdict
        verdict = "no significant difference"
    else:
        better = ea.median > eb.median if higher_is_better else ea.median < eb.median
        verdict = "faster" if better else "slower"
    return Comparison(verdict, ratio, p, ea, eb)
