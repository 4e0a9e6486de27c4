"""The course's key questions, each answered from this run's data with the plot
of its experiment. An answer is a sentence built from the measurements (medians,
paired ratios with their 95% CI, the significance verdict); when the data is not
there the question says which scenario to run — never a canned conclusion.

Which way a sentence goes (faster or slower, grew or shrank, caught or missed) is
never written here: :func:`reports.analysis.versus` picks the words from a
significance test on the repeats, :func:`reports.analysis.said` from a fact
computed from the data, and tests/test_report_answers.py checks that no other string of
this module holds such a word."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scenarios.stats import Estimate, median_ci

from . import plots
from .analysis import (
    arrival_phrase,
    ci_text,
    contrast,
    estimate,
    job_phrase,
    median_of,
    mix_of,
    ordered_variants,
    priorities_of,
    ratio,
    said,
    sweep_value,
    values,
    versus,
)
from .data import RunData, finite
from .tables import fmt

__all__ = ["QUESTIONS", "Question", "answer_all", "queue_and_busy"]


@dataclass
class Question:
    id: str
    title: str
    scenarios: tuple[str, ...]
    answer: str = ""
    details: list[str] = field(default_factory=list)
    plot: str | None = None
    caption: str = ""
    missing: str = ""


def matplotlib_null():
    from matplotlib import ticker

    return ticker.NullFormatter()


def _backends(data: RunData, scenario: str, variant: str = "", column: str = "throughput") -> list[str]:
    return [b for b in data.implementations() if values(data, scenario, variant, b, column)]


def _failed_cases(data: RunData, scenario: str) -> list[str]:
    """Variants of ``scenario`` where every measurement failed, with the error."""
    df = data.df[data.df.scenario == scenario]
    out = []
    for variant, g in df.groupby("variant", sort=False):
        if not (g.ok == 1).any():
            err = next((e for e in g.error.tolist() if isinstance(e, str) and e), "no error recorded")
            out.append(f"{variant or scenario}: every measurement failed ({err})")
    return out


def _not_run(q: Question, data: RunData) -> Question:
    failed = [line for s in q.scenarios for line in _failed_cases(data, s)]
    names = " ".join(q.scenarios)
    if failed:
        q.missing = f"Not answered: {'; '.join(failed)}."
    else:
        q.missing = (
            f"Not answered: this run has no successful measurement of {', '.join(map(repr, q.scenarios))} "
            f"(run `poolbench run --scenarios {names}`)."
        )
    return q


def _findings(data: RunData, scenario: str, variant: str, backend: str) -> list[Any]:
    """The findings (the experiment's dataclass) of each successful repeat of one case."""
    ok = data.ok
    g = ok[(ok.scenario == scenario) & (ok.variant == variant) & (ok.implementation == backend)]
    return [f for f in g.findings.tolist() if f is not None]


def _repeats(data: RunData, scenario: str, variant: str, backend: str, get: Callable[[Any], Any]) -> dict[int, float]:
    """repeat -> ``get(row)`` over the successful repeats of one case on one backend
    (a row of the measurements, its ``findings`` decoded), where that is a number."""
    ok = data.ok
    g = ok[(ok.scenario == scenario) & (ok.variant == variant) & (ok.implementation == backend)]
    out = {}
    for row in g.itertuples():
        try:
            v = get(row)
        except (AttributeError, KeyError, TypeError, ZeroDivisionError):
            v = None
        if finite(v):
            out[int(row.repeat)] = float(v)
    return out


def _rejected_share(row: Any) -> float | None:
    return 100.0 * row.rejected / row.jobs if finite(row.jobs) and row.jobs else None


def _med(vals: list[Any]) -> float | None:
    vals = [v for v in vals if finite(v)]
    return statistics.median(vals) if vals else None


def ms(value: float | None) -> str:
    """A duration given in ms, in the unit that reads best: 0.17 ms, 43 µs."""
    if not finite(value):
        return "—"
    return f"{value * 1000:.3g} µs" if value < 0.1 else f"{fmt(value)} ms"


def _join(parts: list[str]) -> str:
    return "; ".join(p for p in parts if p)


# ---------------------------------------------------------------- throughput: cpu, io


def _throughput_question(data: RunData, q: Question, scenario: str) -> Question:
    backends = _backends(data, scenario)
    if not backends:
        return _not_run(q, data)
    params = data.params(scenario)
    job = job_phrase(params)
    ests = {b: estimate(data, scenario, "", b, "throughput") for b in backends}
    winner = max(backends, key=lambda b: ests[b].median)
    cpus = data.run.get("cpu_count")
    sentences = [
        f"On this machine ({cpus} CPUs, {params.get('workers')} workers, {arrival_phrase(params)}) {winner} had "
        f"the highest median throughput on {job}: {ci_text(ests[winner], ' jobs/s')}."
    ]
    pairs = [(winner, b) for b in backends if b != winner]
    if scenario == "cpu" and winner not in ("thread", "process") and {"thread", "process"} <= set(backends):
        pairs.append(("process", "thread"))
    for a, b in pairs:
        r = ratio(data, scenario, "", a, b)
        if r is not None:
            sentences.append(f"{a} was {versus(r, more='faster than', less='slower than')}.")
    q.answer = " ".join(sentences)
    for b in backends:
        cpu = median_of(data, scenario, "", b, "cpu_s")
        p99 = median_of(data, scenario, "", b, "lat_p99_ms")
        q.details.append(f"{b}: {fmt(ests[b].median)} jobs/s, p99 latency {fmt(p99)} ms, CPU {fmt(cpu)} s per repeat")
    fig, (ax1, ax2) = plots.figure(2, height=2.8)
    plots.bars(
        ax1,
        [scenario],
        {b: [(ests[b].median, ests[b].low, ests[b].high)] for b in backends},
        ylabel="jobs/s (median, 95% CI)",
        title=f"throughput: {job}",
    )
    lat = {}
    for b in backends:
        lat[b] = [(median_of(data, scenario, "", b, c), None, None) for c in ("lat_p50_ms", "lat_p99_ms")]
    plots.bars(ax2, ["p50", "p99"], lat, ylabel="latency ms (median of repeats)", title="latency")
    q.plot = plots.to_uri(fig)
    q.caption = f"Scenario {scenario!r}: {params.get('description', '')}"
    return q


def q_cpu(data: RunData) -> Question:
    q = Question("q-cpu", "Threads or processes for CPU-bound jobs?", ("cpu",))
    return _throughput_question(data, q, "cpu")


def q_io(data: RunData) -> Question:
    q = Question("q-io", "Which backend for I/O-bound jobs?", ("io",))
    return _throughput_question(data, q, "io")


# ---------------------------------------------------------------- overhead


def q_overhead(data: RunData) -> Question:
    q = Question("q-overhead", "What does the pool itself cost per job?", ("noop",))
    backends = _backends(data, "noop")
    bench = data.benchmarks
    bench_noop = bench[bench.group == "noop"] if bench is not None else None
    if not backends and (bench_noop is None or bench_noop.empty):
        return _not_run(q, data)
    sentences = []
    ncols = int(bool(backends)) + int(bench_noop is not None and not bench_noop.empty)
    fig, axes = plots.figure(ncols, width=10.5 if ncols == 2 else 5.0, height=2.8, left=2.0, wspace=2.4)
    if backends:
        workers = data.params("noop").get("workers")
        tps = {b: estimate(data, "noop", "", b, "throughput") for b in backends}
        # wall time per job = 1 / throughput; the interval inverts with it
        us = {b: Estimate(1e6 / t.median, 1e6 / t.high, 1e6 / t.low, t.n) for b, t in tps.items()}
        cheapest = max(backends, key=lambda b: tps[b].median)
        parts = [f"{b} {ci_text(us[b], ' µs')}" for b in backends]
        sentences.append(
            f"Wall time per no-op job through the pool (submit, queue, worker, result; 1 / throughput with "
            f"{workers} workers, {arrival_phrase(data.params('noop'))}): {', '.join(parts)}."
        )
        for b in backends:
            if b != cheapest:
                r = ratio(data, "noop", "", cheapest, b)
                if r is not None:
                    phrase = versus(
                        r, more="faster than", less="slower than", same="at a rate not significantly different from"
                    )
                    sentences.append(f"{cheapest} handled no-ops {phrase}.")
        plots.hbars(
            axes[0],
            [(b, us[b]) for b in backends],
            xlabel="µs per job (median, 95% CI)",
            title="pool scenario 'noop': wall time per job",
        )
    if bench_noop is not None and not bench_noop.empty:
        series = {}
        for _, row in bench_noop.iterrows():
            rounds = row.round_jobs_per_s
            series[str(row.contender)] = (median_ci(rounds) if rounds else None, row.jobs_per_s, rounds)
        names = list(series)
        plots.hbars(
            axes[-1],
            [(n, s[0] or s[1]) for n, s in series.items()],
            xlabel="jobs/s (median round, 95% CI)",
            title="pytest-benchmark: 'noop' group",
        )
        ref = next((n for n in names if n == "ThreadPoolExecutor"), None)
        if ref and "thread" in series and series["thread"][2] and series[ref][2]:
            ours, theirs = (dict(enumerate(series[name][2])) for name in ("thread", ref))
            r = contrast(ours, theirs, "thread", "those of concurrent.futures.ThreadPoolExecutor", paired=False)
            sentences.append(
                f"In the micro-benchmarks (batches of {int(bench_noop.jobs.dropna().iloc[0])} no-ops, "
                f"{r.n_a} and {r.n_b} rounds), the thread pool's jobs/s were "
                f"{versus(r, more='higher than', less='lower than')}."
            )
    q.answer = " ".join(sentences)
    q.plot = plots.to_uri(fig)
    q.caption = "Left: the 'noop' scenario (1 / throughput). Right, when `make bench` has run: pytest-benchmark rounds."
    return q


# ---------------------------------------------------------------- time breakdown

PARTS = (("queue_wait_ms", "queue wait"), ("dispatch_ms", "dispatch"), ("run_ms", "run"), ("return_ms", "return"))


def breakdown(data: RunData, scenario: str, variant: str, backend: str) -> dict[str, float | None]:
    return {label: median_of(data, scenario, variant, backend, col) for col, label in PARTS}


def plot_breakdown(ax_service, ax_wait, labels: list[str], parts: list[dict]) -> None:
    ys = list(range(len(labels)))
    left = [0.0] * len(labels)
    colors = {"dispatch": "#ff9896", "run": "#98df8a", "return": "#9edae5", "queue wait": "#c7c7c7"}
    for name in ("dispatch", "run", "return"):
        widths = [p.get(name) or 0.0 for p in parts]
        ax_service.barh(ys, widths, left=left, color=colors[name], label=name, edgecolor="#555", linewidth=0.4)
        left = [a + b for a, b in zip(left, widths, strict=False)]
    ax_service.set_yticks(ys)
    ax_service.set_yticklabels(labels, fontsize=7)
    ax_service.invert_yaxis()
    ax_service.set_xlabel("ms per job (mean, median of repeats)", fontsize=8)
    ax_service.set_title("service time: dispatch / run / return", fontsize=9)
    plots.legend(ax_service, loc="lower right")
    ax_wait.barh(
        ys,
        [p.get("queue wait") or 0.0 for p in parts],
        color=colors["queue wait"],
        edgecolor="#555",
        linewidth=0.4,
        label="queue wait",
    )
    ax_wait.set_yticks(ys)
    ax_wait.set_yticklabels(labels, fontsize=7)
    ax_wait.invert_yaxis()
    ax_wait.set_xlabel("ms per job (mean, median of repeats)", fontsize=8)
    ax_wait.set_title("queue wait (before a worker takes the job)", fontsize=9)


def q_breakdown(data: RunData) -> Question:
    q = Question("q-breakdown", "Where does a job's time go?", ("cpu", "io", "noop"))
    present = [s for s in q.scenarios if _backends(data, s, column="run_ms")]
    if not present:
        return _not_run(q, data)
    labels, parts = [], []
    for s in present:
        for b in _backends(data, s, column="run_ms"):
            labels.append(f"{s} · {b}")
            parts.append(breakdown(data, s, "", b))
    focus = present[0]
    job = job_phrase(data.params(focus))
    shares = []
    for b in _backends(data, focus, column="run_ms"):
        p = breakdown(data, focus, "", b)
        service = sum(p[k] or 0.0 for k in ("dispatch", "run", "return"))
        overhead = (p["dispatch"] or 0.0) + (p["return"] or 0.0)
        if service > 0:
            shares.append(
                f"{b} {ms(p['dispatch'])} dispatching and {ms(p['return'])} returning "
                f"({100 * overhead / service:.0f}% of its service time)"
            )
    waits = [breakdown(data, focus, "", b)["queue wait"] for b in _backends(data, focus, column="run_ms")]
    waits = [w for w in waits if finite(w)]
    sentences = [f"For {job}: {_join(shares)}."]
    params = data.params(focus)
    if waits:
        closed = (params.get("arrival") or "closed") == "closed"
        sentences.append(
            f"Before that, jobs waited {fmt(min(waits))}–{fmt(max(waits))} ms on average in the queue "
            f"({arrival_phrase(params)}, queue_size {params.get('queue_size')}): "
            + said(
                closed,
                "in a closed loop the queue wait is the backlog the generator keeps full, not the pool's overhead.",
                "in an open loop it is the queueing that the offered load causes.",
            )
        )
    q.answer = " ".join(sentences)
    fig, (a1, a2) = plots.figure(2, width=10.0, height=0.9 + 0.26 * len(labels), left=1.5, wspace=1.7)
    plot_breakdown(a1, a2, labels, parts)
    q.plot = plots.to_uri(fig)
    q.caption = (
        "Per-job means recorded by each repeat (median over repeats). Dispatch: taken by a worker → "
        "function starts (pickling and IPC for processes); return: function ends → the caller's future resolves."
    )
    return q


# ---------------------------------------------------------------- workers sweep


def q_workers(data: RunData) -> Question:
    q = Question("q-workers", "How many workers?", ("workers_sweep",))
    variants = [v for v in ordered_variants(data, "workers_sweep") if _backends(data, "workers_sweep", v)]
    if not variants:
        return _not_run(q, data)
    job = job_phrase(data.params("workers_sweep"))
    series: dict[str, list] = {}
    for v in variants:
        for b in _backends(data, "workers_sweep", v):
            e = estimate(data, "workers_sweep", v, b, "throughput")
            series.setdefault(b, []).append((sweep_value(v), e.median, e.low, e.high))
    lo, hi = min(sweep_value(v) for v in variants), max(sweep_value(v) for v in variants)
    v_lo = next(v for v in variants if sweep_value(v) == lo)
    v_hi = next(v for v in variants if sweep_value(v) == hi)
    parts = []
    for b in series:
        r = contrast(
            values(data, "workers_sweep", v_hi, b, "throughput"), values(data, "workers_sweep", v_lo, b, "throughput")
        )
        if r is not None and hi > lo:
            linear = f"{100 * r.cmp.ratio / (hi / lo):.0f}% of linear"
            parts.append(
                f"on {b} it {versus(r, more='grew', less='shrank', same='did not change significantly', detail=linear)}"
            )
    at_hi = {b: estimate(data, "workers_sweep", v_hi, b, "throughput") for b in _backends(data, "workers_sweep", v_hi)}
    best = max(at_hi, key=lambda b: at_hi[b].median)
    q.answer = (
        f"From {lo:g} to {hi:g} workers, the throughput of {job}: {_join(parts)}. "
        f"At {hi:g} workers {best} had the highest median throughput: {ci_text(at_hi[best], ' jobs/s')}."
        if parts
        else "Only one worker count has results: no scaling to report."
    )
    fig, (ax,) = plots.figure(1, height=3.0)
    plots.lines(
        ax,
        series,
        xlabel="workers",
        ylabel="jobs/s (median, 95% CI)",
        logx=True,
        title=f"throughput against workers: {job}",
    )
    first = min((pts[0] for pts in series.values()), key=lambda p: p[0])
    best0 = max(pts[0][1] for pts in series.values() if pts[0][0] == first[0])
    ax.plot([lo, hi], [best0, best0 * hi / lo], ":", color="#777", label="linear from the best 1st point")
    ticks = sorted(sweep_value(v) for v in variants)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks], minor=False)
    ax.xaxis.set_minor_formatter(matplotlib_null())
    plots.legend(ax)
    q.plot = plots.to_uri(fig)
    q.caption = (
        f"Scenario 'workers_sweep', {arrival_phrase(data.params('workers_sweep'))}. Dotted: perfect linear scaling."
    )
    return q


# ---------------------------------------------------------------- saturation


def _load_points(data: RunData, scenario: str, backend: str, column: str) -> list[tuple]:
    pts = []
    for v in ordered_variants(data, scenario):
        e = estimate(data, scenario, v, backend, column)
        if e is not None:
            pts.append((sweep_value(v), e.median, e.low, e.high))
    return pts


def _rejected_pct(data: RunData, scenario: str, variant: str, backend: str) -> float | None:
    ok = data.ok
    g = ok[(ok.scenario == scenario) & (ok.variant == variant) & (ok.implementation == backend)]
    jobs = g.jobs.fillna(0).sum()
    return 100.0 * g.rejected.fillna(0).sum() / jobs if jobs else None


def q_saturation(data: RunData) -> Question:
    q = Question("q-saturation", "Where is the saturation knee?", ("saturation",))
    variants = [v for v in ordered_variants(data, "saturation") if _backends(data, "saturation", v)]
    if not variants:
        return _not_run(q, data)
    params = data.params("saturation")
    backends = [
        b for b in data.implementations() if any(values(data, "saturation", v, b, "throughput") for v in variants)
    ]
    sentences = []
    capacity = None
    for b in backends:
        points = []  # (load, served, offered, rejected %, kept up) in load order
        for v in variants:
            tp = median_of(data, "saturation", v, b, "throughput")
            offered = median_of(data, "saturation", v, b, "offered_rate")
            rej = _rejected_pct(data, "saturation", v, b) or 0.0
            if tp is None or not offered:
                continue
            load = sweep_value(v)
            capacity = capacity or offered / load
            points.append((load, tp, offered, rej, tp >= 0.95 * offered and rej < 1.0))
        # It keeps up to a load only if it kept up at that load and at every lower one.
        n_kept = next((i for i, p in enumerate(points) if not p[4]), len(points))
        upto = f"{points[n_kept - 1][0]:g}× capacity ({fmt(points[n_kept - 1][2])} jobs/s)" if n_kept else ""
        s = f"{b}: " + said(
            n_kept > 0,
            f"kept up with the offered load at every load up to {upto}",
            "did not keep up even at the lowest offered load",
        )
        if n_kept < len(points):
            load, tp, offered, rej, _ = points[n_kept]
            s += f"; at {load:g}× it served {fmt(tp)} of {fmt(offered)} jobs/s offered ({100 * tp / offered:.0f}%), rejecting {rej:.0f}%"
            later = [f"{p[0]:g}×" for p in points[n_kept + 1 :] if p[4]]
            s += said(bool(later), f"; it kept up again at {', '.join(later)}", "")
        tps = [median_of(data, "saturation", v, b, "throughput") for v in variants]
        peak = max(t for t in tps if finite(t))
        p99s = [(sweep_value(v), median_of(data, "saturation", v, b, "lat_p99_ms")) for v in variants]
        p99s = [p for p in p99s if finite(p[1])]
        if capacity:
            s += f"; its peak, {fmt(peak)} jobs/s, is {100 * peak / capacity:.0f}% of the nominal capacity"
        if len(p99s) >= 2:
            s += f"; p99 latency went from {fmt(p99s[0][1])} ms at {p99s[0][0]:g}× to {fmt(p99s[-1][1])} ms at {p99s[-1][0]:g}×"
        sentences.append(s)
    nominal = (
        f"Nominal capacity: {fmt(capacity)} jobs/s ({params.get('workers')} workers / {job_phrase(params)}, "
        f"queue_size {params.get('queue_size')}, overflow={params.get('overflow')}). "
        if capacity
        else ""
    )
    q.answer = nominal + ". ".join(sentences) + "."
    fig, (a1, a2, a3) = plots.figure(3, width=10.5, height=3.0)
    plots.lines(
        a1,
        {b: _load_points(data, "saturation", b, "throughput") for b in backends},
        xlabel="offered load (× capacity)",
        ylabel="jobs/s served (median, 95% CI)",
        title="throughput",
    )
    if capacity:
        xs = [sweep_value(v) for v in variants]
        a1.plot(xs, [x * capacity for x in xs], ":", color="#777", label="offered")
        a1.axhline(capacity, color="#aaa", linestyle="--", linewidth=0.8, label="nominal capacity")
        plots.legend(a1)
    plots.lines(
        a2,
        {b: _load_points(data, "saturation", b, "lat_p99_ms") for b in backends},
        xlabel="offered load (× capacity)",
        ylabel="p99 latency ms",
        logy=True,
        title="p99 latency",
    )
    plots.lines(
        a2,
        {f"{b} p50": _load_points(data, "saturation", b, "lat_p50_ms") for b in backends},
        xlabel="offered load (× capacity)",
        ylabel="latency ms (p99 solid, p50 dashed)",
        logy=True,
        title="latency",
        style="--x",
        colors={f"{b} p50": plots.color(b) for b in backends},
    )
    plots.lines(
        a3,
        {
            b: [(sweep_value(v), _rejected_pct(data, "saturation", v, b), None, None) for v in variants]
            for b in backends
        },
        xlabel="offered load (× capacity)",
        ylabel="% of jobs rejected",
        title="rejected (QueueFull)",
    )
    q.plot = plots.to_uri(fig)
    q.caption = (
        "Scenario 'saturation', open loop at fixed rates; latency counts from each job's intended start "
        "(no coordinated omission)."
    )
    return q


# ---------------------------------------------------------------- queue size sweep


def q_queue(data: RunData) -> Question:
    q = Question("q-queue", "Buffered or unbuffered: how big a queue?", ("queue_sweep",))
    all_variants = ordered_variants(data, "queue_sweep")
    variants = [v for v in all_variants if _backends(data, "queue_sweep", v)]
    failed = _failed_cases(data, "queue_sweep")
    if not variants:
        return _not_run(q, data)
    params = data.params("queue_sweep")
    backends = [
        b for b in data.implementations() if any(values(data, "queue_sweep", v, b, "throughput") for v in variants)
    ]
    parts = []
    for b in backends:
        mine = [v for v in variants if values(data, "queue_sweep", v, b, "throughput")]
        if not mine:
            continue
        (v0, v1), (q0, q1) = (mine[0], mine[-1]), (sweep_value(mine[0]), sweep_value(mine[-1]))
        r0, r1 = (_rejected_pct(data, "queue_sweep", v, b) for v in (v0, v1))
        l0, l1 = (median_of(data, "queue_sweep", v, b, "lat_p99_ms") for v in (v0, v1))
        if len(mine) == 1:
            parts.append(f"{b}: queue_size={q0:g} rejected {fmt(r0)}% with p99 {fmt(l0)} ms")
            continue
        rejected = contrast(
            _repeats(data, "queue_sweep", v1, b, _rejected_share), _repeats(data, "queue_sweep", v0, b, _rejected_share)
        )
        p99 = contrast(
            values(data, "queue_sweep", v1, b, "lat_p99_ms"), values(data, "queue_sweep", v0, b, "lat_p99_ms")
        )
        still = "did not change significantly"
        rej_text = (
            versus(rejected, more="rose", less="fell", same=still, detail=f"{fmt(r0)}% → {fmt(r1)}%")
            if rejected
            else "—"
        )
        p99_text = versus(p99, more="rose", less="fell", same=still, detail=f"{fmt(l0)} → {fmt(l1)} ms") if p99 else "—"
        parts.append(
            f"{b}: from queue_size={q0:g} to {q1:g} the share of jobs rejected {rej_text}, and p99 latency {p99_text}"
        )
    q.answer = f"At {params.get('load')}× capacity with overflow={params.get('overflow')!s}: " + "; ".join(parts) + "."
    if failed:
        q.answer += " No result for " + "; ".join(failed) + "."
    fig, (a1, a2) = plots.figure(2, height=2.8)
    plots.lines(
        a1,
        {
            b: [(sweep_value(v), _rejected_pct(data, "queue_sweep", v, b), None, None) for v in variants]
            for b in backends
        },
        xlabel="queue_size",
        ylabel="% rejected",
        logx=True,
        title="rejected",
    )
    plots.lines(
        a2,
        {b: _load_points(data, "queue_sweep", b, "lat_p99_ms") for b in backends},
        xlabel="queue_size",
        ylabel="p99 latency ms",
        logx=True,
        title="p99 latency",
    )
    q.plot = plots.to_uri(fig)
    q.caption = f"Scenario 'queue_sweep' ({arrival_phrase(params)}): rejections and p99 latency by queue size."
    return q


# ---------------------------------------------------------------- overload policies


def q_overload(data: RunData) -> Question:
    q = Question("q-overload", "Block or reject under overload?", ("overload",))
    variants = [v for v in ordered_variants(data, "overload") if _backends(data, "overload", v)]
    if not variants:
        return _not_run(q, data)
    params = data.params("overload")
    backends = [
        b for b in data.implementations() if any(values(data, "overload", v, b, "throughput") for v in variants)
    ]
    sentences = []
    for v in variants:
        policy = str(sweep_value(v))
        bs = _backends(data, "overload", v)
        rej = ", ".join(f"{b} {fmt(_rejected_pct(data, 'overload', v, b))}%" for b in bs)
        p99 = ", ".join(f"{b} {fmt(median_of(data, 'overload', v, b, 'lat_p99_ms'))}" for b in bs)
        sentences.append(f"{policy}: rejected {rej}; p99 latency {p99} ms")
    block, reject = "overflow=block", "overflow=reject"
    if block in variants and reject in variants:
        for b in backends:
            r = contrast(
                values(data, "overload", reject, b, "lat_p99_ms"),
                values(data, "overload", block, b, "lat_p99_ms"),
                "",
                "block's",
            )
            if r is not None:
                sentences.append(
                    f"{b}: reject's p99 latency was {versus(r, more='higher than', less='lower than')}, "
                    f"at the price of {fmt(_rejected_pct(data, 'overload', reject, b))}% of jobs rejected"
                )
    q.answer = (
        f"Offered {params.get('load')}× capacity with queue_size {params.get('queue_size')} "
        f"({arrival_phrase(params)}). " + ". ".join(sentences) + "."
    )
    labels = [str(sweep_value(v)) for v in variants]
    fig, (a1, a2, a3) = plots.figure(3, width=10.5, height=2.8)
    plots.bars(
        a1,
        labels,
        {b: [(median_of(data, "overload", v, b, "lat_p99_ms"), None, None) for v in variants] for b in backends},
        ylabel="p99 latency ms",
        title="p99 latency",
    )
    plots.bars(
        a2,
        labels,
        {b: [(_rejected_pct(data, "overload", v, b), None, None) for v in variants] for b in backends},
        ylabel="% rejected",
        title="rejected",
    )
    tp = {
        b: [
            (e.median, e.low, e.high) if (e := estimate(data, "overload", v, b, "throughput")) else (None, None, None)
            for v in variants
        ]
        for b in backends
    }
    plots.bars(a3, labels, tp, ylabel="jobs/s (median, 95% CI)", title="throughput")
    q.plot = plots.to_uri(fig)
    waits = {str(sweep_value(v)): w for v in variants if (w := data.params("overload", v).get("wait")) is not None}
    q.caption = "Scenario 'overload': block waits for room; reject refuses at once" + "".join(
        f"; {policy} waits at most {w * 1000:g} ms" for policy, w in waits.items()
    )
    q.caption += "."
    return q


# ---------------------------------------------------------------- priorities


def priority_waits(data: RunData, backend: str) -> dict[str, dict[str, float | None]]:
    by_class: dict[str, dict[str, list]] = {}
    for f in _findings(data, "priority", "", backend):
        for prio, v in f.queue_wait_ms_by_priority.items():
            slot = by_class.setdefault(str(prio), {"p50": [], "p99": []})
            slot["p50"].append(v.p50)
            slot["p99"].append(v.p99)
    return {p: {k: _med(v) for k, v in d.items()} for p, d in sorted(by_class.items(), key=lambda kv: float(kv[0]))}


def q_priority(data: RunData) -> Question:
    q = Question("q-priority", "Do high-priority jobs overtake the others?", ("priority",))
    backends = [b for b in data.implementations() if priority_waits(data, b)]
    if not backends:
        return _not_run(q, data)
    params = data.params("priority")
    shares = {str(p): w for w, p in priorities_of(params)}
    total = sum(shares.values()) or 1
    parts = []
    classes: list[str] = []
    for b in backends:
        w = priority_waits(data, b)
        classes = list(dict.fromkeys(classes + list(w)))
        if len(w) >= 2:
            lo, hi = next(iter(w)), list(w)[-1]

            def p99_of(prio: str):
                return lambda row: row.findings.queue_wait_ms_by_priority[prio].p99

            r = contrast(
                _repeats(data, "priority", "", b, p99_of(hi)),
                _repeats(data, "priority", "", b, p99_of(lo)),
                "",
                f"that of priority {lo}",
                higher_is_better=False,
            )
            if r is not None:
                share = f"{100 * shares.get(hi, 0) / total:.0f}% of jobs"
                against = f"p99 {fmt(w[hi]['p99'])} ms against {fmt(w[lo]['p99'])} ms"
                parts.append(
                    f"{b}: the queue wait of priority {hi} ({share}) was "
                    + versus(r, more="longer than", less="shorter than", detail=against)
                )
    q.answer = f"At {params.get('load')}× capacity ({arrival_phrase(params)}): " + "; ".join(parts) + "."
    fig, (ax,) = plots.figure(1, height=2.8)
    groups = [f"prio {p} {k}" for p in classes for k in ("p50", "p99")]
    plots.bars(
        ax,
        groups,
        {
            b: [(priority_waits(data, b).get(p, {}).get(k), None, None) for p in classes for k in ("p50", "p99")]
            for b in backends
        },
        ylabel="queue wait ms (median of repeats)",
        log=True,
        title="queue wait by priority class",
    )
    q.plot = plots.to_uri(fig)
    q.caption = "Scenario 'priority': queue wait (enqueued → taken by a worker) per priority class."
    return q


# ---------------------------------------------------------------- cancellation


def cancel_figures(data: RunData, backend: str) -> dict[str, Any]:
    found = _findings(data, "cancel_latency", "", backend)
    out: dict[str, Any] = {}
    for key in ("cancel_ms", "timeout_overshoot_ms"):
        for k in ("p50", "p99"):
            out[f"{key}.{k}"] = _med([getattr(getattr(f, key), k) for f in found])
    # Whether the function itself ran on is measured by probe jobs (runs without them
    # record nothing about it, and the answer says nothing).
    probed = [f for f in found if f.kept_running is not None]
    out["kept_running"] = sum(f.kept_running for f in probed) if probed else None
    out["probes"] = sum(f.probes for f in probed)
    out["stop"] = probed[-1].stop if probed else None
    return out


def _kept_running(f: dict[str, Any]) -> str:
    if f["kept_running"] is None:
        return ""
    how = said(
        f["stop"] == "cooperative",
        "a job that watches its context, stopped by its cancellation",
        "a job that ignores its context, stopped from outside (killed, or its task cancelled)",
    )
    return " — " + said(
        f["kept_running"] == 0,
        f"the function itself stopped in all {f['probes']} probes ({how})",
        f"the function itself kept running past its stop in {f['kept_running']} of {f['probes']} probes ({how})",
    )


def q_cancel(data: RunData) -> Question:
    q = Question("q-cancel", "How fast do cancel and timeout end a running job?", ("cancel_latency",))
    backends = [b for b in data.implementations() if _findings(data, "cancel_latency", "", b)]
    if not backends:
        return _not_run(q, data)
    figs = {b: cancel_figures(data, b) for b in backends}
    cancel = "; ".join(
        f"{b} p50 {ms(f['cancel_ms.p50'])}, p99 {ms(f['cancel_ms.p99'])}{_kept_running(f)}" for b, f in figs.items()
    )
    over = "; ".join(
        f"{b} p50 {ms(f['timeout_overshoot_ms.p50'])}, p99 {ms(f['timeout_overshoot_ms.p99'])}" for b, f in figs.items()
    )
    fastest = min(
        (b for b in backends if finite(figs[b]["cancel_ms.p50"])), key=lambda b: figs[b]["cancel_ms.p50"], default=None
    )
    versus_others = []
    if fastest:

        def p50s(b: str) -> dict[int, float]:
            return _repeats(data, "cancel_latency", "", b, lambda row: row.findings.cancel_ms.p50)

        for b in backends:
            r = contrast(p50s(fastest), p50s(b), "", b, higher_is_better=False) if b != fastest else None
            if r is not None:
                versus_others.append(versus(r, more="slower than", less="faster than"))
    q.answer = (
        f"From cancel() of a running job to the caller seeing it end: {cancel}. "
        f"A running job's timeout overshot its deadline by: {over}."
        + (
            f" Median cancel latency (p50 per repeat) of {fastest}, the lowest: {'; '.join(versus_others)}."
            if versus_others
            else ""
        )
    )
    groups = ["cancel p50", "cancel p99", "timeout overshoot p50", "timeout overshoot p99"]
    keys = ["cancel_ms.p50", "cancel_ms.p99", "timeout_overshoot_ms.p50", "timeout_overshoot_ms.p99"]
    fig, (ax,) = plots.figure(1, height=2.8)
    plots.bars(
        ax,
        groups,
        {b: [(figs[b][k], None, None) for k in keys] for b in backends},
        ylabel="ms (median of repeats)",
        log=True,
        title="cancel latency and timeout overshoot",
    )
    q.plot = plots.to_uri(fig)
    q.caption = (
        "Scenario 'cancel_latency': alternately, a running job is cancelled, and a job runs into its timeout. "
        "The jobs are probes: each tells whether its function ended when it should."
    )
    return q


# ---------------------------------------------------------------- retries and timeouts


def _share_bars(data: RunData, q: Question, scenario: str, column: str, expected: float | None, what: str) -> Question:
    backends = _backends(data, scenario, column=column)
    if not backends:
        return _not_run(q, data)
    shares = {}
    for b in backends:
        ok = data.ok
        g = ok[(ok.scenario == scenario) & (ok.variant == "") & (ok.implementation == b)]
        jobs = g.jobs.fillna(0).sum()
        shares[b] = 100.0 * g[column].fillna(0).sum() / jobs if jobs else None
    fig, (ax,) = plots.figure(1, height=2.6)
    plots.bars(ax, [what], {b: [(shares[b], None, None)] for b in backends}, ylabel=f"% of jobs {what}")
    if expected is not None:
        ax.axhline(expected, color="#444", linestyle=":", label=f"expected {expected:.1f}%")
        plots.legend(ax)
    q.plot = plots.to_uri(fig)
    q.details = [f"{b}: {fmt(shares[b])}% {what}" for b in backends]
    q.answer = ", ".join(f"{b} {fmt(shares[b])}%" for b in backends)
    return q


def q_retries(data: RunData) -> Question:
    q = Question("q-retries", "Do retries rescue failing jobs?", ("failing",))
    params = data.params("failing")
    mix = mix_of(params)
    prob = next((p.get("probability", 1.0) for _, kind, p in mix if kind == "fail"), None)
    retries = params.get("retries", 0)
    expected = 100 * (1 - prob ** (1 + retries)) if prob is not None else None
    q = _share_bars(data, q, "failing", "completed", expected, "succeeded")
    if q.missing:
        return q
    retried = {b: median_of(data, "failing", "", b, "retried") for b in _backends(data, "failing", column="completed")}
    q.answer = (
        f"With {prob:.0%} of attempts failing and {retries} retries, jobs succeeded: {q.answer}"
        + (f" (expected {expected:.1f}% if failures are independent)" if expected is not None else "")
        + "; retries per repeat: "
        + ", ".join(f"{b} {fmt(v)}" for b, v in retried.items())
        + "."
    )
    q.caption = "Scenario 'failing'."
    return q


def q_timeouts(data: RunData) -> Question:
    q = Question("q-timeouts", "Do timeouts stop overrunning jobs?", ("timeouts",))
    params = data.params("timeouts")
    timeout = params.get("timeout")
    mix = mix_of(params)
    total = sum(w for w, _, _ in mix) or 1
    over = sum(w for w, _, p in mix if timeout and p.get("ms", 0) / 1000 > timeout)
    expected = 100 * over / total if mix else None
    q = _share_bars(data, q, "timeouts", "timed_out", expected, "timed out")
    if q.missing:
        return q
    p99 = ", ".join(
        f"{b} {fmt(median_of(data, 'timeouts', '', b, 'lat_p99_ms'))} ms"
        for b in _backends(data, "timeouts", column="timed_out")
    )
    q.answer = (
        f"Against a {fmt((timeout or 0) * 1000)} ms timeout, jobs timed out: {q.answer}"
        + (f" (expected {expected:.1f}%: the share of jobs that run past the timeout)" if expected is not None else "")
        + f". p99 latency of the jobs that succeeded: {p99}."
    )
    q.caption = "Scenario 'timeouts'."
    return q


# ---------------------------------------------------------------- tails


PCTS = (("lat_p50_ms", "p50"), ("lat_p95_ms", "p95"), ("lat_p99_ms", "p99"), ("lat_max_ms", "max"))


def percentile_curve(ax, data: RunData, scenario: str, variant: str, title: str) -> bool:
    drawn = False
    xs = list(range(len(PCTS)))
    for b in data.implementations():
        ys = [median_of(data, scenario, variant, b, col) for col, _ in PCTS]
        pts = [(x, y) for x, y in zip(xs, ys, strict=False) if finite(y) and y > 0]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=plots.color(b), label=b, markersize=4)
            drawn = True
    ax.set_xticks(xs)
    ax.set_xticklabels([label for _, label in PCTS], fontsize=8)
    plots.log_axis(ax)
    ax.set_ylabel("latency ms (median of repeats)", fontsize=8)
    ax.set_title(title, fontsize=9)
    plots.legend(ax)
    return drawn


def q_tails(data: RunData) -> Question:
    q = Question("q-tails", "What do bursts and heavy tails do to tail latency?", ("bursty", "heavy_tail", "mixed"))
    present = [s for s in q.scenarios if _backends(data, s, column="lat_p99_ms")]
    if not present:
        return _not_run(q, data)
    parts = []
    for s in present:
        ratios = []
        for b in _backends(data, s, column="lat_p99_ms"):
            p50, p99 = median_of(data, s, "", b, "lat_p50_ms"), median_of(data, s, "", b, "lat_p99_ms")
            if finite(p50) and finite(p99) and p50 > 0:
                ratios.append(f"{b} {p99 / p50:.1f}× (p99 {fmt(p99)} ms)")
        parts.append(f"{s}: p99/p50 {', '.join(ratios)}")
    q.answer = "; ".join(parts) + "."
    fig, axes = plots.figure(len(present), width=3.6 * len(present), height=2.8)
    for ax, s in zip(axes, present, strict=False):
        percentile_curve(ax, data, s, "", s)
    q.plot = plots.to_uri(fig)
    q.caption = (
        "Latency percentiles from the stored p50/p95/p99/max of each repeat (per-job samples are not "
        "recorded, so this is not a full CDF)."
    )
    return q


# ---------------------------------------------------------------- primitives


def q_primitives(data: RunData) -> Question:
    q = Question("q-primitives", "Go's sync primitives: what do Python's cost?", ("primitives",))
    backends = [b for b in data.implementations() if _findings(data, "primitives", "", b)]
    if not backends:
        return _not_run(q, data)
    b = backends[0]
    per: dict[str, list] = {}
    for f in _findings(data, "primitives", "", b):
        for name, v in f.ops_per_s.items():
            per.setdefault(name, []).append(v)
    ests = {name: median_ci([v for v in vs if finite(v)]) for name, vs in per.items() if any(finite(v) for v in vs)}
    threads = data.params("primitives").get("workers")

    def find(word: str) -> str | None:
        return next((n for n in ests if n.startswith(word)), None)

    facts = []
    lock, rw, q_, sq, cnt, rlock = (
        find(w) for w in ("Lock", "RWLock", "queue.Queue", "SimpleQueue", "itertools", "RLock")
    )

    def ops(name: str) -> dict[int, float]:
        return _repeats(data, "primitives", "", b, lambda row: row.findings.ops_per_s[name])

    def against(name: str, other: str, label: str) -> str:
        r = contrast(ops(name), ops(other), "", label)
        return versus(r, more="faster than", less="slower than") if r else "—"

    if lock:
        facts.append(
            f"a Lock (Mutex) did {fmt(ests[lock].median / 1e6)} M acquire+release per second in all "
            f"({1e9 / ests[lock].median:.0f} ns each)"
        )
    if lock and rw:
        facts.append(f"a readers-writer lock with 90% reads was {against(rw, lock, 'a plain Lock')}")
    if lock and rlock:
        facts.append(f"RLock was {against(rlock, lock, 'Lock')}")
    if q_ and sq:
        facts.append(f"SimpleQueue put+get was {against(sq, q_, 'queue.Queue (the closest thing to a channel)')}")
    if cnt and lock:
        facts.append(
            f"an itertools.count increment (atomic under the GIL) was {against(cnt, lock, 'a locked increment')}"
        )
    wg = find("Thread start")
    if wg:
        facts.append(
            f"a thread start+join (the WaitGroup idiom) took {1e6 / ests[wg].median:.0f} µs "
            f"({fmt(ests[wg].median)} per second in all)"
        )
    q.answer = f"With {threads} threads on {b}: " + "; ".join(facts) + "."
    names = sorted(ests, key=lambda n: -ests[n].median)
    fig, (ax,) = plots.figure(1, height=0.9 + 0.26 * len(names), left=2.6)
    plots.hbars(
        ax,
        [(n, ests[n]) for n in names],
        xlabel="operations per second (median, 95% CI)",
        log=True,
        title=f"synchronization primitives, {threads} threads",
    )
    for patch in ax.patches:
        patch.set_color(plots.color(b))
    q.plot = plots.to_uri(fig)
    q.caption = "Scenario 'primitives' (thread-only): operations per second by all threads together."
    return q


# ---------------------------------------------------------------- testing tools


def q_leaks(data: RunData) -> Question:
    q = Question("q-leaks", "Does the leak checker catch what a pool leaves behind?", ("leaks",))
    backends = [b for b in data.implementations() if _findings(data, "leaks", "", b)]
    if not backends:
        return _not_run(q, data)
    caught: dict[str, dict[str, float | None]] = {}
    left_running: dict[str, float | None] = {}
    situations: list[str] = []
    for b in backends:
        per: dict[str, list] = {}
        repeats = _findings(data, "leaks", "", b)
        for f in repeats:
            for k, v in f.caught.items():
                per.setdefault(k, []).append(v)
        caught[b] = {k: _med(v) for k, v in per.items()}
        # what the pool itself said it left running: the truth the checker is held to
        left_running[b] = _med([f.abandoned_threads_reported for f in repeats])
        situations = list(dict.fromkeys(situations + list(per)))

    def found(situation: str, b: str) -> str:
        n = caught[b].get(situation)
        if not finite(n):
            return f"not measured on {b}"
        reported = f"{fmt(n, 'int')} reported"
        if situation == "after cleanup":  # everything was stopped: nothing may be left
            return said(n == 0, f"nothing left on {b}", f"{reported} on {b} after cleanup")
        if situation == "job ignoring its timeout" and left_running[b] == 0:
            # the pool stopped the job (killed, cancelled): there was nothing to catch
            return said(
                n == 0,
                f"nothing to catch on {b}, where the pool stopped the job (none reported)",
                f"{reported} on {b}, though the pool stopped the job",
            )
        return said(n > 0, f"caught on {b} ({reported})", f"missed on {b} (none reported)")

    parts = [f"{s}: " + ", ".join(found(s, b) for b in backends) for s in situations]
    q.answer = "What the leak checker reported — " + "; ".join(parts) + "."
    fig, (ax,) = plots.figure(1, height=2.6)
    plots.bars(
        ax,
        situations,
        {b: [(caught[b].get(s), None, None) for s in situations] for b in backends},
        ylabel="leftovers reported",
        title="leak checker findings",
    )
    q.plot = plots.to_uri(fig)
    q.caption = (
        "Scenario 'leaks': a pool never shut down, and a job that ignores its timeout; "
        "'after cleanup' should be 0 everywhere."
    )
    return q


def q_racy(data: RunData) -> Question:
    q = Question("q-racy", "Does the conformance kit catch a racy pool, and does race mode help?", ("racy_pool",))
    backends = [b for b in data.implementations() if _findings(data, "racy_pool", "", b)]
    if not backends:
        return _not_run(q, data)
    found = _findings(data, "racy_pool", "", backends[0])[-1]
    tests = found.caught_by
    summary = found.summary
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (failed|passed|skipped|error)", summary)}
    pytest_says = f" (pytest: {summary})" if summary else ""
    q.answer = said(
        bool(tests),
        f"The conformance kit caught the deliberately buggy backend (abandoned work counted twice, "
        f"a lost stop): it failed {len(tests)} test{'s' * (len(tests) != 1)}{pytest_says}: {', '.join(tests)}.",
        f"The conformance kit caught nothing in the deliberately buggy backend (abandoned work counted "
        f"twice, a lost stop): no test failed{pytest_says}.",
    )
    odds = race_odds_sentence(found)
    if odds:
        q.answer += " " + odds
    if counts:
        fig, (ax,) = plots.figure(1, height=2.2, left=1.0)
        names = list(counts)
        ax.barh(
            names,
            [counts[n] for n in names],
            color=["#d62728" if n in ("failed", "error") else "#2ca02c" if n == "passed" else "#999" for n in names],
        )
        ax.set_xlabel("conformance tests", fontsize=8)
        ax.set_title("the racy pool under the conformance suite", fontsize=9)
        q.plot = plots.to_uri(fig)
    q.caption = "Scenario 'racy_pool'."
    return q


def race_odds_sentence(found: Any) -> str:
    """Race mode's catch rate against plain runs, its direction from a two-sided
    Fisher's exact test at 5% on the two counts (empty when not measured)."""
    n = getattr(found, "race_runs", 0) or 0
    if not n:
        return ""
    k, k0 = found.caught_with_race, found.caught_without_race
    import numpy as np
    from scipy.stats import fisher_exact

    p = float(fisher_exact(np.array([[k, n - k], [k0, n - k0]])).pvalue)
    figures = f"{k}/{n} runs under race mode against {k0}/{n} without (Fisher's exact p={p:.2g})"
    bug = "the lost wake-up (a backend that clears its wake-up after looking at the queue)"
    significant = p < 0.05
    verdict = said(
        significant,
        f"Race mode caught {bug} {said(k > k0, 'more often', 'less often')}: in {figures}.",
        f"Race mode made no significant difference to catching {bug}: caught in {figures}.",
    )
    seed = getattr(found, "race_seed", None)
    if k and seed is not None:
        verdict += f" Its seeds were {seed}–{seed + n - 1}: `--pools-race-seed` replays one."
    return verdict


QUESTIONS: tuple[Callable[[RunData], Question], ...] = (
    q_cpu,
    q_io,
    q_overhead,
    q_breakdown,
    q_workers,
    q_saturation,
    q_queue,
    q_overload,
    q_priority,
    q_cancel,
    q_retries,
    q_timeouts,
    q_tails,
    q_primitives,
    q_leaks,
    q_racy,
)


def answer_all(data: RunData) -> list[Question]:
    out = []
    for fn in QUESTIONS:
        try:
            out.append(fn(data))
        except Exception as e:  # noqa: BLE001 - one odd data set must not cost the whole report
            title = (fn.__doc__ or fn.__name__).strip()
            out.append(
                Question(
                    fn.__name__.replace("_", "-"),
                    title,
                    (),
                    missing=f"Not answered: the data could not be analysed ({type(e).__name__}: {e}).",
                )
            )
    return out


# ---------------------------------------------------------------- queue depth and busy workers


def queue_and_busy(data: RunData) -> tuple[str, str | None]:
    """Time series are not recorded; the time-averaged queue depth and busy
    workers follow from the stored means by Little's law (L = λ·W): λ = jobs
    served per second, W = mean queue wait or mean time a worker holds a job."""
    timeline = [
        (r.scenario, r.variant, r.implementation, r.findings.timeline)
        for r in data.ok.itertuples()
        if getattr(r.findings, "timeline", None) is not None
    ]
    if timeline:
        return _timeline_plot(timeline)
    rows = []
    for scenario in ("saturation", "queue_sweep", "overload", "priority", "io", "cpu"):
        for v in ordered_variants(data, scenario):
            for b in data.implementations():
                tp = median_of(data, scenario, v, b, "throughput")
                wait = median_of(data, scenario, v, b, "queue_wait_ms")
                hold = [median_of(data, scenario, v, b, c) for c in ("dispatch_ms", "run_ms")]
                if not (finite(tp) and finite(wait) and all(finite(h) for h in hold)):
                    continue
                workers = data.params(scenario).get("workers")
                rows.append(
                    (f"{scenario}[{v}]" if v else scenario, b, tp * wait / 1000, tp * sum(hold) / 1000, workers)
                )
    if not rows:
        return (
            "Not recorded: the measurements store no time series, and no load scenario (saturation, "
            "queue_sweep, overload, priority, io, cpu) has the means to derive averages from.",
            None,
        )
    cases = list(dict.fromkeys(r[0] for r in rows))
    backends = list(dict.fromkeys(r[1] for r in rows))
    fig, (a1, a2) = plots.figure(2, width=10.5, height=3.6, bottom=1.5)
    lookup = {(r[0], r[1]): r for r in rows}
    plots.bars(
        a1,
        cases,
        {b: [(lookup[(c, b)][2] if (c, b) in lookup else None, None, None) for c in cases] for b in backends},
        ylabel="mean jobs waiting",
        title="queue depth (time average)",
        wrap=0,
        rotation=35,
    )
    plots.bars(
        a2,
        cases,
        {b: [(lookup[(c, b)][3] if (c, b) in lookup else None, None, None) for c in cases] for b in backends},
        ylabel="mean busy workers",
        title="busy workers (time average)",
        wrap=0,
        rotation=35,
    )
    busiest = max(rows, key=lambda r: r[3] / r[4] if r[4] else 0)
    text = (
        "Queue depth and busy workers over time are not recorded (the measurement stores per-repeat "
        "aggregates, not a time series). Shown instead: their time averages over each run, derived by Little's "
        "law from the stored means — mean queue depth = jobs/s × mean queue wait, mean busy workers = jobs/s × "
        "mean (dispatch + run). "
        f"The busiest: {busiest[1]} on {busiest[0]}, {busiest[3]:.1f} of {busiest[4]} workers busy on average, "
        f"{busiest[2]:.1f} jobs waiting."
    )
    return text, plots.to_uri(fig)


def _timeline_plot(timeline: list) -> tuple[str, str | None]:
    """The sampled timelines (scenarios.result.Timeline: seconds from the start,
    queued and busy gauges) of the measurements that have one."""
    seen: dict[str, Any] = {}
    for scenario, variant, backend, tl in timeline:
        key = f"{scenario}[{variant}]" if variant else scenario
        seen.setdefault(key, {}).setdefault(backend, tl)
    cases = list(seen)[:6]
    fig, axes = plots.figure(len(cases), width=3.6 * len(cases), height=2.8)
    for ax, case in zip(axes, cases, strict=False):
        for backend, tl in seen[case].items():
            ax.plot(tl.t, tl.queued, "-", color=plots.color(backend), label=f"{backend} queued", linewidth=1)
            ax.plot(tl.t, tl.busy, ":", color=plots.color(backend), label=f"{backend} busy", linewidth=1)
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
        plots.legend(ax)
    return "Sampled queue depth (solid) and busy workers (dotted) during the first repeat of each case.", plots.to_uri(
        fig
    )
