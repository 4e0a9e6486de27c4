"""The targets a scenario sets (``[[targets]]`` in its file: ours against a contender,
or against the ideal, or a bound on a metric), checked against this run's data.

A ratio is oriented so that higher is better for ours: throughput ours / theirs,
latency and memory theirs / ours. Its interval is the 95% CI of the per-repeat
ratios (repeats are interleaved, so repeat r of both sides ran side by side), its
verdict the Mann–Whitney test on the repeats; "met" compares the median ratio with
the target. The ideal of a throughput is ``workers`` divided by the mean time one job
ran (measured where it ran, in the same repeat).
"""

from __future__ import annotations

from dataclasses import dataclass

from scenarios.spec import Target

from .analysis import Ratio, contrast, ordered_variants, said, times, values
from .data import RunData, case_key, finite
from .tables import fmt

__all__ = ["TargetCheck", "check_all"]

UNITS = {"throughput": "jobs/s", "lat_p50_ms": "ms", "lat_p99_ms": "ms", "mb_per_100k": "MB per 100k waiting jobs"}


@dataclass(frozen=True)
class TargetCheck:
    case: str
    impl: str
    against: str  # an implementation, "ideal", or "" for a bound
    metric: str
    goal: str  # "≥ 2.00×", "≤ 100 MB per 100k waiting jobs"
    value: float | None  # the oriented median ratio, or the metric's median
    met: bool | None  # None: no data
    text: str  # the sentence


def _metric(data: RunData, scenario: str, variant: str, impl: str, metric: str) -> dict[int, float]:
    if metric != "mb_per_100k":
        return values(data, scenario, variant, impl, metric)
    ok = data.ok
    g = ok[(ok.scenario == scenario) & (ok.variant == variant) & (ok.implementation == impl)]
    out = {}
    for row in g.itertuples():
        v = getattr(row.findings, metric, None)
        if finite(v):
            out[int(row.repeat)] = float(v)
    return out


def _ideal(data: RunData, scenario: str, variant: str, impl: str) -> dict[int, float]:
    workers = data.params(scenario, variant).get("workers") or 1
    run_ms = values(data, scenario, variant, impl, "run_ms")
    return {r: workers / (ms / 1000) for r, ms in run_ms.items() if ms > 0}


def _check(data: RunData, scenario: str, variant: str, t: Target) -> TargetCheck | None:
    impl, against, metric = t.impl, t.versus or "", t.metric
    ours = _metric(data, scenario, variant, impl, metric)
    if not ours:
        return None
    key = case_key(scenario, variant)
    unit = UNITS.get(metric, "")
    if t.at_most is not None:
        bound = t.at_most
        med = sorted(ours.values())[len(ours) // 2]
        met = med <= bound
        text = f"{key}: {impl} {metric} {fmt(med)} {unit} (median of {len(ours)}); target ≤ {fmt(bound)}: " + said(
            met, "met", "NOT met"
        )
        return TargetCheck(key, impl, "", metric, f"≤ {fmt(bound)} {unit}", med, met, text)
    theirs = (
        _ideal(data, scenario, variant, impl)
        if against == "ideal"
        else _metric(data, scenario, variant, against, metric)
    )
    if not theirs:
        return None
    # oriented: a / b is "how many times better ours is"
    r: Ratio | None = (
        contrast(ours, theirs, impl, against) if t.higher_is_better else contrast(theirs, ours, against, impl)
    )
    if r is None or r.est is None:
        return None
    goal = t.at_least
    met = r.est.median >= goal
    of_ideal = said(against == "ideal", f" (= {r.est.median:.0%} of the ideal: workers / mean run time)", "")
    spread = f"95% CI of the per-repeat ratios {times(r.est.low)}–{times(r.est.high)}" if r.est.n > 1 else "1 repeat"
    text = (
        f"{key}: {impl} against {against}, {metric}: {times(r.est.median)}{of_ideal} ({spread}; {r.significance()}); "
        f"target ≥ {goal:.2f}×: " + said(met, "met", "NOT met")
    )
    return TargetCheck(key, impl, against, metric, f"≥ {goal:.2f}×", r.est.median, met, text)


def check_all(data: RunData) -> list[TargetCheck]:
    out = []
    for scenario in data.scenarios():
        targets = [Target.model_validate(t) for t in data.params(scenario).get("targets") or []]
        for variant in ordered_variants(data, scenario):
            for t in targets:
                found = _check(data, scenario, variant, t)
                if found is not None:
                    out.append(found)
    return out
