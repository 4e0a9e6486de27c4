"""Numbers for sentences: per-repeat values, paired ratios with their confidence
interval (:func:`scenarios.stats.median_ci` on the per-repeat ratios; repeats
are interleaved, so repeat r of two backends ran under the same conditions), and
the significance verdict of :func:`scenarios.stats.compare`, phrased honestly
when there are too few repeats for the test to ever say yes."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass

from scenarios.stats import ALPHA, Comparison, Estimate, compare, median_ci

from .data import RunData, finite
from .tables import fmt

__all__ = ["Ratio", "estimate", "job_phrase", "min_p", "ratio", "significance", "sweep_value", "values"]


def values(data: RunData, scenario: str, variant: str, backend: str, column: str) -> dict[int, float]:
    """repeat → value, for the successful repeats of one case on one backend."""
    ok = data.ok
    g = ok[(ok.scenario == scenario) & (ok.variant == variant) & (ok.backend == backend)]
    return {int(r): float(v) for r, v in zip(g.repeat, g[column], strict=False) if finite(v)}


@functools.lru_cache(maxsize=4096)
def _median_ci(vals: tuple[float, ...]) -> Estimate:
    return median_ci(vals)


def estimate(data: RunData, scenario: str, variant: str, backend: str, column: str) -> Estimate | None:
    vals = tuple(values(data, scenario, variant, backend, column).values())
    return _median_ci(vals) if vals else None


def median_of(data: RunData, scenario: str, variant: str, backend: str, column: str) -> float | None:
    vals = list(values(data, scenario, variant, backend, column).values())
    return statistics.median(vals) if vals else None


@dataclass(frozen=True)
class Ratio:
    a: str
    b: str
    est: Estimate  # median and 95% CI of the per-repeat ratios a / b
    cmp: Comparison
    n_a: int
    n_b: int

    def significance(self) -> str:
        return significance(self.cmp, self.n_a, self.n_b)


def ratio(
    data: RunData,
    scenario: str,
    variant: str,
    a: str,
    b: str,
    column: str = "throughput",
    *,
    higher_is_better: bool = True,
) -> Ratio | None:
    va = values(data, scenario, variant, a, column)
    vb = values(data, scenario, variant, b, column)
    paired = [va[r] / vb[r] for r in sorted(set(va) & set(vb)) if vb[r]]
    if not paired:
        return None
    cmp = compare(list(va.values()), list(vb.values()), higher_is_better=higher_is_better)
    return Ratio(a, b, median_ci(paired), cmp, len(va), len(vb))


def min_p(n: int, m: int) -> float:
    """The smallest two-sided p-value the Mann-Whitney U test can give for n and
    m untied values: both extreme orderings, out of C(n+m, n)."""
    return min(1.0, 2 / math.comb(n + m, n)) if n and m else 1.0


def significance(cmp: Comparison, n_a: int, n_b: int) -> str:
    if cmp.verdict != "no significant difference":
        return f"significant, Mann–Whitney p={cmp.p_value:.3f}"
    floor = min_p(n_a, n_b)
    if floor >= ALPHA:
        return f"too few repeats ({n_a} and {n_b}) for the significance test to reach {ALPHA:.0%}"
    return f"no significant difference, Mann–Whitney p={cmp.p_value:.2f}"


def ci_text(est: Estimate, unit: str = "") -> str:
    if est.n < 2:
        return f"{fmt(est.median)}{unit} (1 repeat: no interval)"
    return f"{fmt(est.median)}{unit} (95% CI {fmt(est.low)}–{fmt(est.high)})"


def times(x: float) -> str:
    """A ratio: 1.07×, 21.9×, 464×."""
    return f"{x:.0f}×" if x >= 100 else f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def ratio_text(r: Ratio, what: str) -> str:
    """ "1.24× as fast as process (ratio of the medians; 95% CI of the per-repeat
    ratios 1.05–1.42, 2 repeats; <significance>)". The point is the ratio of the
    medians, so it agrees with the tables and the winner; the interval is
    median_ci over the paired per-repeat ratios."""
    e = r.est
    ci = (
        "1 paired repeat: no interval"
        if e.n < 2
        else f"95% CI of the per-repeat ratios {times(e.low)}–{times(e.high)}, {e.n} paired repeats"
    )
    return f"{times(r.cmp.ratio)} {what} {r.b} ({ci}; {r.significance()})"


def sweep_value(variant: str):
    """ "workers=4" → 4.0; "overflow=block-wait" → "block-wait"."""
    _, _, raw = variant.partition("=")
    try:
        return float(raw)
    except ValueError:
        return raw


def job_phrase(params: dict) -> str:
    """What the scenario's jobs are, from its stored mix: "1 ms CPU jobs"."""
    mix = params.get("mix") or []
    if len(mix) != 1:
        return f"jobs of the {params.get('name', '?')!r} mix"
    _, kind, p = mix[0]
    ms = p.get("ms")
    if kind == "cpu" and ms is not None:
        return f"{ms:g} ms CPU jobs"
    if kind == "sleep" and ms is not None:
        return f"{ms:g} ms sleep (I/O-like) jobs"
    if kind == "noop":
        return "no-op jobs"
    return f"{kind} jobs"


def ordered_variants(data: RunData, scenario: str) -> list[str]:
    """The scenario's variants in sweep order (numeric when they are numbers)."""
    variants = list(dict.fromkeys(data.df[data.df.scenario == scenario].variant.tolist()))
    vals = [sweep_value(v) for v in variants]
    if all(isinstance(v, float) for v in vals):
        return [v for _, v in sorted(zip(vals, variants, strict=False))]
    return variants
