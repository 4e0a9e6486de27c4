"""The answer for the user's own workload: which implementation, with how many
workers, served it best — by throughput and by p99 latency under the scenario's
arrivals — with the 95% CI, the significance test against the runner-up, the knee of
the workers sweep, and "no significant difference" when that is the truth.

The recommendation follows the metric that decides under the scenario's arrivals: in
a closed loop (and serial, and map) the implementation that got through the jobs
fastest, the highest median throughput; in an open loop every implementation that
keeps up serves the offered rate, so the lowest median p99 latency decides. The
workers it names are the knee of that implementation's sweep: the fewest workers that
reach :data:`KNEE` of its peak throughput. The runner-up is the best configuration of
another implementation; the two are compared on their repeats (interleaved, so
paired) with :func:`reports.analysis.versus`.

As in :mod:`reports.questions`, no sentence here states a direction of its own: the
words come from :func:`~reports.analysis.versus` and :func:`~reports.analysis.said`
(checked by tests/test_report_answers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scenarios.stats import Estimate

from . import plots
from .analysis import (
    Ratio,
    arrival_phrase,
    ci_text,
    contrast,
    direction,
    estimate,
    ordered_variants,
    said,
    values,
    versus,
)
from .data import RunData
from .tables import fmt

__all__ = ["KNEE", "Recommendation", "recommend", "recommend_all", "user_scenarios"]

KNEE = 0.9  # the knee: the fewest workers reaching this share of the peak median throughput
CLOSED = ("closed", "serial", "map")


@dataclass
class Recommendation:
    scenario: str
    #: the implementation and its workers ("" when the data cannot say)
    choice: str = ""
    answer: str = ""
    details: list[str] = field(default_factory=list)
    plot: str | None = None
    caption: str = ""
    missing: str = ""


def user_scenarios(data: RunData) -> list[str]:
    """The scenarios of this run whose mix runs the user's own functions."""
    out = []
    for scenario in data.scenarios():
        workloads = data.params(scenario).get("workloads") or []
        if any(isinstance(w, dict) and w.get("type") is None for w in workloads):
            out.append(scenario)
    return out


@dataclass(frozen=True)
class Config:
    impl: str
    variant: str
    workers: int | None

    def __str__(self) -> str:
        if self.workers is None:
            return self.impl
        return f"{self.impl} with {self.workers} worker{'s' * (self.workers != 1)}"


def _workload_phrase(params: dict) -> str:
    names = []
    for w in params.get("workloads") or []:
        names.append(w.get("name") or w.get("fn") or w.get("coro") or w.get("type") or "?")
    return (names[0] if len(names) == 1 else "the mix of " + ", ".join(names)) if names else "its jobs"


def _configs(data: RunData, scenario: str) -> list[Config]:
    out = []
    for v in ordered_variants(data, scenario):
        workers = data.params(scenario, v).get("workers")
        for impl in data.implementations():
            if values(data, scenario, v, impl, "throughput"):
                out.append(Config(impl, v, workers))
    return out


def _pick(ests: dict[Config, Estimate | None], *, lowest: bool) -> Config | None:
    have = [c for c, e in ests.items() if e is not None]
    if not have:
        return None
    return (min if lowest else max)(have, key=lambda c: ests[c].median)


def _against(data: RunData, scenario: str, a: Config, b: Config, column: str, higher: bool, label: str) -> Ratio | None:
    return contrast(
        values(data, scenario, a.variant, a.impl, column),
        values(data, scenario, b.variant, b.impl, column),
        str(a),
        label,
        higher_is_better=higher,
    )


def _best_pair(ests: dict[Config, Estimate | None], *, lowest: bool) -> tuple[Config | None, Config | None]:
    """The best configuration, and the best of any other implementation."""
    best = _pick(ests, lowest=lowest)
    if best is None:
        return None, None
    others = {c: e for c, e in ests.items() if c.impl != best.impl}
    return best, _pick(others, lowest=lowest)


def _knee(data: RunData, scenario: str, configs: list[Config], impl: str) -> tuple[Config, Config] | None:
    """(the knee, the peak) of ``impl``'s workers sweep, or None without a sweep of workers."""
    mine = sorted((c for c in configs if c.impl == impl and c.workers is not None), key=lambda c: c.workers)
    if len({c.workers for c in mine}) < 2:
        return None
    meds = {c: estimate(data, scenario, c.variant, impl, "throughput").median for c in mine}
    peak = max(mine, key=lambda c: meds[c])
    knee = next(c for c in mine if meds[c] >= KNEE * meds[peak])
    return knee, peak


def recommend(data: RunData, scenario: str) -> Recommendation:
    rec = Recommendation(scenario)
    params = data.params(scenario)
    configs = _configs(data, scenario)
    if not configs:
        rec.missing = (
            f"No recommendation for {scenario!r}: no implementation has a successful measurement "
            "(see its table for the errors and the cells skipped)."
        )
        return rec
    arrival = params.get("arrival") or "closed"
    tp = {c: estimate(data, scenario, c.variant, c.impl, "throughput") for c in configs}
    p99 = {c: estimate(data, scenario, c.variant, c.impl, "lat_p99_ms") for c in configs}
    by_latency = arrival not in CLOSED and any(e is not None for e in p99.values())
    sweep = params.get("sweep") or {}
    workers_swept = "workers" in sweep

    best_tp, runner_tp = _best_pair(tp, lowest=False)
    best_lat, runner_lat = _best_pair(p99, lowest=True)
    lead = best_lat if by_latency else best_tp
    runner = runner_lat if by_latency else runner_tp
    column, higher = ("lat_p99_ms", False) if by_latency else ("throughput", True)
    knee = _knee(data, scenario, configs, lead.impl) if workers_swept else None
    choice = Config(lead.impl, knee[0].variant, knee[0].workers) if knee else lead
    rec.choice = str(choice)

    head = f"For {_workload_phrase(params)} ({arrival_phrase(params)}, {params.get('jobs')} jobs a measurement)"
    decided = _against(data, scenario, lead, runner, column, higher, str(runner)) if runner else None
    if decided is None:
        sentences = [f"{head}: {choice}, the only implementation measured."]
    else:
        sentences = [
            f"{head}: "
            + said(
                direction(decided) != 0,
                f"use {choice}.",
                f"use {choice} or {runner}: the test finds no significant difference between them, so either serves it.",
            )
        ]
    if best_tp is not None:
        s = f"Throughput: {best_tp} had the highest median, {ci_text(tp[best_tp], ' jobs/s')}"
        r = (
            _against(data, scenario, best_tp, runner_tp, "throughput", True, f"the runner-up, {runner_tp}")
            if runner_tp
            else None
        )
        if r is not None:
            s += f"; it was {versus(r, more='faster than', less='slower than')}"
        sentences.append(s + ".")
    if best_lat is not None:
        s = f"p99 latency ({arrival_phrase(params)}): {best_lat} had the lowest median, {ci_text(p99[best_lat], ' ms')}"
        r = (
            _against(data, scenario, best_lat, runner_lat, "lat_p99_ms", False, f"that of the runner-up, {runner_lat}")
            if runner_lat
            else None
        )
        if r is not None:
            s += f"; its p99 was {versus(r, more='higher than', less='lower than')}"
        sentences.append(s + ".")
        sentences.append(
            said(
                by_latency,
                "In an open loop every implementation that keeps up serves the offered rate: p99 latency decides.",
                "In a closed loop the implementation that gets through the jobs fastest serves them best: "
                "throughput decides.",
            )
        )
    if knee is not None:
        k, peak = knee
        sentences.append(
            f"Workers: {lead.impl} reached {KNEE:.0%} of its peak throughput ({fmt(tp[peak].median)} jobs/s with "
            f"{peak.workers} workers) with {k.workers} workers (the knee of the sweep)"
            + said(
                k == peak,
                "",
                "; "
                + f"{peak.workers} workers against {k.workers}: "
                + versus(
                    _against(data, scenario, peak, k, "throughput", True, f"{k.workers} workers"),
                    more="faster than",
                    less="slower than",
                ),
            )
            + "."
        )
    elif not workers_swept:
        sentences.append(
            f"Workers: {params.get('workers')} only; sweep them (--workers 1 2 4 8, or [sweep] workers = [...] in a "
            "scenario file) to find the knee."
        )
    rec.answer = " ".join(sentences)
    # each implementation at its best (the tables below have every configuration)
    for impl in dict.fromkeys(c.impl for c in configs):
        c = max((c for c in configs if c.impl == impl), key=lambda c: tp[c].median)
        rec.details.append(
            f"{c}: {fmt(tp[c].median)} jobs/s"
            + (f", p99 {fmt(p99[c].median)} ms" if p99[c] is not None else "")
            + (f" ({c.variant})" if c.variant and not workers_swept else "")
        )
    rec.plot = _plot(data, scenario, configs, tp, p99, workers_swept)
    rec.caption = (
        f"Scenario {scenario!r}: median of the repeats with the 95% CI. The knee is the fewest workers reaching "
        f"{KNEE:.0%} of an implementation's peak throughput."
    )
    return rec


def _plot(data: RunData, scenario: str, configs: list[Config], tp: dict, p99: dict, swept: bool) -> str:
    impls = list(dict.fromkeys(c.impl for c in configs))
    fig, (a1, a2) = plots.figure(2, width=10.5, height=3.2)
    if swept:
        series = {i: [(c.workers, tp[c].median, tp[c].low, tp[c].high) for c in configs if c.impl == i] for i in impls}
        plots.lines(a1, series, xlabel="workers", ylabel="jobs/s (median, 95% CI)", logx=True, title="throughput")
        lat = {
            i: [(c.workers, p99[c].median, p99[c].low, p99[c].high) for c in configs if c.impl == i and p99[c]]
            for i in impls
        }
        plots.lines(a2, lat, xlabel="workers", ylabel="p99 latency ms", logx=True, logy=True, title="p99 latency")
    else:
        plots.hbars(a1, [(str(c), tp[c]) for c in configs], xlabel="jobs/s (median, 95% CI)", title="throughput")
        plots.hbars(
            a2, [(str(c), p99[c]) for c in configs if p99[c]], xlabel="p99 latency ms", title="p99 latency", log=True
        )
    return plots.to_uri(fig)


def recommend_all(data: RunData) -> list[Recommendation]:
    return [recommend(data, s) for s in user_scenarios(data)]
