"""Numbers for sentences: per-repeat values, paired ratios with their confidence
interval (:func:`scenarios.stats.median_ci` on the per-repeat ratios; repeats
are interleaved, so repeat r of two implementations ran under the same conditions), and
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

__all__ = [
    "SAME",
    "Ratio",
    "arrival_phrase",
    "contrast",
    "direction",
    "estimate",
    "job_phrase",
    "min_p",
    "mix_of",
    "priorities_of",
    "ratio",
    "said",
    "significance",
    "sweep_value",
    "values",
    "versus",
]


def values(data: RunData, scenario: str, variant: str, impl: str, column: str) -> dict[int, float]:
    """repeat → value, for the successful repeats of one case on one implementation."""
    ok = data.ok
    g = ok[(ok.scenario == scenario) & (ok.variant == variant) & (ok.implementation == impl)]
    return {int(r): float(v) for r, v in zip(g.repeat, g[column], strict=False) if finite(v)}


@functools.lru_cache(maxsize=4096)
def _median_ci(vals: tuple[float, ...]) -> Estimate:
    return median_ci(vals)


def estimate(data: RunData, scenario: str, variant: str, impl: str, column: str) -> Estimate | None:
    vals = tuple(values(data, scenario, variant, impl, column).values())
    return _median_ci(vals) if vals else None


def median_of(data: RunData, scenario: str, variant: str, impl: str, column: str) -> float | None:
    vals = list(values(data, scenario, variant, impl, column).values())
    return statistics.median(vals) if vals else None


@dataclass(frozen=True)
class Ratio:
    a: str
    b: str
    est: Estimate | None  # median and 95% CI of the per-repeat ratios a / b (None: not paired)
    cmp: Comparison
    n_a: int
    n_b: int

    def significance(self) -> str:
        return significance(self.cmp, self.n_a, self.n_b)


def contrast(
    va: dict[int, float],
    vb: dict[int, float],
    a: str = "",
    b: str = "",
    *,
    higher_is_better: bool = True,
    paired: bool = True,
) -> Ratio | None:
    """``a`` against ``b`` from their values per repeat (repeat -> value): the
    Mann-Whitney comparison, and the CI of the ratios of repeats that ran side by
    side (``paired``; pytest-benchmark rounds are not)."""
    if not va or not vb:
        return None
    ratios = [va[r] / vb[r] for r in sorted(set(va) & set(vb)) if vb[r]] if paired else []
    cmp = compare(list(va.values()), list(vb.values()), higher_is_better=higher_is_better)
    return Ratio(a, b, median_ci(ratios) if ratios else None, cmp, len(va), len(vb))


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
    """Implementation ``a`` against implementation ``b`` on one case."""
    va = values(data, scenario, variant, a, column)
    vb = values(data, scenario, variant, b, column)
    return contrast(va, vb, a, b, higher_is_better=higher_is_better)


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
    if not math.isfinite(x):
        return "—×"
    return f"{x:.0f}×" if x >= 100 else f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


# ---------------------------------------------------------------- the words of a conclusion
#
# Every sentence of the report that says which way something went takes its words
# from one of these two functions, which pick them from the data: a question passes
# the words for each direction and never writes a verdict itself. tests/test_report_answers.py
# checks that reports/questions.py has no direction word anywhere else.

SAME = "not significantly different from"


def direction(r: Ratio) -> int:
    """+1 when a's repeats are significantly higher than b's (two-sided Mann-Whitney
    at 5%), -1 when significantly lower, 0 when the test finds no difference (or
    cannot: too few repeats)."""
    if r.cmp.verdict == "no significant difference":
        return 0
    return (r.cmp.a.median > r.cmp.b.median) - (r.cmp.a.median < r.cmp.b.median)


def versus(r: Ratio, *, more: str, less: str, same: str = SAME, detail: str = "") -> str:
    """The comparative phrase for ``r.a`` against ``r.b``: ``more`` when a's values
    are significantly higher, ``less`` when significantly lower, ``same`` otherwise,
    followed by ``r.b`` and the evidence: "slower than process (0.50×; 95% CI of the
    per-repeat ratios 0.45×–0.55×, 5 paired repeats; significant, Mann–Whitney
    p=0.008)". The ratio is of the medians, so that it agrees with the tables; the
    interval is median_ci over the paired per-repeat ratios."""
    word = {1: more, -1: less, 0: same}[direction(r)]
    e = r.est
    if e is None:
        ci = "not paired: no interval of the ratio"
    elif e.n < 2:
        ci = "1 paired repeat: no interval"
    else:
        ci = f"95% CI of the per-repeat ratios {times(e.low)}–{times(e.high)}, {e.n} paired repeats"
    head = ", ".join(x for x in (times(r.cmp.ratio) if math.isfinite(r.cmp.ratio) else "", detail) if x)
    evidence = "; ".join(x for x in (head, ci, r.significance()) if x)
    return f"{word}{' ' + r.b if r.b else ''} ({evidence})"


def said(fact: bool, yes: str, no: str) -> str:
    """``yes`` or ``no`` by a fact computed from the data (a count above zero, a
    threshold met): the words of a conclusion that is not a comparison of repeats."""
    return yes if fact else no


def sweep_value(variant: str):
    """ "workers=4" → 4.0; "overflow=block-wait" → "block-wait"."""
    _, _, raw = variant.partition("=")
    try:
        return float(raw)
    except ValueError:
        return raw


def mix_of(params: dict) -> list[tuple[float, str, dict]]:
    """(weight, job type or the function's import path, parameters) of each workload
    of a stored scenario (runs made before workloads stored a "mix" of triples)."""
    if "mix" in params:
        return [(w, kind, dict(p)) for w, kind, p in params["mix"]]
    return [
        (w.get("weight", 1.0), w.get("type") or w.get("fn") or w.get("coro") or "?", w.get("params") or {})
        for w in params.get("workloads") or []
    ]


def priorities_of(params: dict) -> list[tuple[float, int]]:
    """(weight, priority) of a stored scenario's priority mix."""
    return [
        (p["weight"], p["priority"]) if isinstance(p, dict) else (p[0], p[1]) for p in params.get("priorities") or []
    ]


def job_phrase(params: dict) -> str:
    """What the scenario's jobs are, from its stored mix: "1 ms CPU jobs"."""
    mix = mix_of(params)
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


def arrival_phrase(params: dict) -> str:
    """How the scenario's jobs arrived, from its stored parameters: "closed loop",
    "open loop, Poisson arrivals at 0.9× capacity"."""
    arrival = params.get("arrival") or "closed"
    if arrival == "closed":
        return "closed loop"
    how = {"fixed": "a fixed rate", "poisson": "Poisson arrivals", "bursty": f"bursts of {params.get('burst')}"}
    load = params.get("load")
    at = f" at {load:g}× capacity" if isinstance(load, (int, float)) else ""
    return f"open loop, {how.get(arrival, arrival)}{at}"


def ordered_variants(data: RunData, scenario: str) -> list[str]:
    """The scenario's variants in sweep order (numeric when they are numbers)."""
    variants = list(dict.fromkeys(data.df[data.df.scenario == scenario].variant.tolist()))
    vals = [sweep_value(v) for v in variants]
    if all(isinstance(v, float) for v in vals):
        return [v for _, v in sorted(zip(vals, variants, strict=False))]
    return variants
