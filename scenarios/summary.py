"""The run's summary: per case, each backend's median throughput with its 95%
confidence interval, median p99 latency and errors, the best backend marked, and
the others compared with it by a significance test."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from . import store
from .stats import compare, median_ci


@dataclass(frozen=True)
class Row:
    case: str
    backend: str
    throughput: Any  # Estimate or None
    p99_ms: float | None
    errors: int
    verdict: str  # vs the best backend of the case
    best: bool
    notes: str


def _key(scenario: str, variant: str) -> str:
    return f"{scenario}[{variant}]" if variant else scenario


def summarize(db: str, run_id: int) -> tuple[dict, list[Row]]:
    runs = store.load_runs(db)
    match = runs[runs.run_id == run_id]
    if match.empty:
        raise ValueError(f"no run {run_id} in {db}; runs there: {', '.join(map(str, runs.run_id)) or 'none'}")
    run = match.iloc[0].to_dict()
    df = store.load_measurements(db, run_id)
    rows: list[Row] = []
    ok = df[df.ok == 1]
    for (scenario, variant), group in ok.groupby(["scenario", "variant"], sort=False):
        per_backend = {}
        for backend, g in group.groupby("backend", sort=False):
            tp = [v for v in g.throughput.tolist() if v is not None and not math.isnan(v)]
            per_backend[backend] = (tp, g)
        with_tp = {b: tp for b, (tp, _) in per_backend.items() if tp}
        best = max(with_tp, key=lambda b: median_ci(with_tp[b]).median) if with_tp else None
        for backend, (tp, g) in per_backend.items():
            est = median_ci(tp) if tp else None
            verdict = ""
            if tp and best and backend != best:
                verdict = str(compare(tp, with_tp[best]))
            p99 = g.lat_p99_ms.dropna()
            notes = []
            if g.generator_bound.fillna(0).astype(int).any():
                notes.append("load generator was the bottleneck")
            extra = g.extra.iloc[-1] or {}
            if "ops_per_s" in extra:
                notes.append("; ".join(f"{k} {v / 1e6:.2f}M/s" for k, v in extra["ops_per_s"].items() if v))
            if "cancel_ms" in extra:
                c, o = extra["cancel_ms"]["p50"], extra["timeout_overshoot_ms"]["p50"]
                notes.append(
                    f"cancel p50 {'—' if c is None else f'{c:.2f} ms'}, timeout overshoot p50 "
                    f"{'—' if o is None else f'{o:.2f} ms'}"
                    + (
                        f", function ran on past its stop in {extra['kept_running']} of {extra.get('probes')} probes"
                        if "kept_running" in extra
                        else ""
                    )
                )
            if "caught" in extra:
                notes.append("leak checker caught: " + ", ".join(f"{k}: {v}" for k, v in extra["caught"].items()))
            if "caught_by" in extra:
                n = len(extra["caught_by"])
                notes.append(
                    f"conformance kit failed the racy pool in {n} tests" if n else "conformance kit caught nothing"
                )
            if "queue_wait_ms_by_priority" in extra:
                notes.append(
                    "queue wait p99 by priority: "
                    + ", ".join(
                        f"{p}: {v['p99']:.1f} ms"
                        for p, v in extra["queue_wait_ms_by_priority"].items()
                        if v["p99"] is not None
                    )
                )
            # an experiment's timeouts and cancels are what it measures, not errors
            errors = int(g.failed.fillna(0).sum()) + (0 if "cancel_ms" in extra else int(g.timed_out.fillna(0).sum()))
            rows.append(
                Row(
                    _key(scenario, variant),
                    backend,
                    est,
                    float(p99.median()) if len(p99) else None,
                    errors,
                    verdict,
                    backend == best and len(with_tp) > 1,
                    " | ".join(notes),
                )
            )
    failed = df[df.ok == 0]
    for _, r in failed.iterrows():
        rows.append(Row(_key(r.scenario, r.variant), r.backend, None, None, 0, "", False, f"FAILED: {r.error}"))
    flags = run.get("flags")
    run["flags"] = json.loads(flags) if isinstance(flags, str) else []
    return run, rows


def print_summary(db: str, run_id: int) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    run, rows = summarize(db, run_id)
    console = Console(width=None if Console().is_terminal else 180)
    console.print(
        f"[bold]poolbench run {run_id}[/] — {run['started_at']} — Python {run['python']} on "
        f"{run['cpu_count']} × {run['cpu_model']} — commit {(run['git_commit'] or '?')[:10]}"
    )
    if run.get("control_median_s"):
        console.print(f"control workload: median {run['control_median_s']:.3f} s, drift {run['control_drift']:.1%}")
    for flag in run["flags"]:
        console.print(f"[yellow]warning:[/] {flag}")
    table = Table(show_lines=False)
    for col in ("case", "backend", "jobs/s median [95% CI]", "p99 ms", "errors", "vs best", "notes"):
        table.add_column(col, overflow="fold")
    last = None
    for r in rows:
        tp = (
            "—"
            if r.throughput is None
            else f"{r.throughput.median:,.0f} [{r.throughput.low:,.0f}, {r.throughput.high:,.0f}]"
        )
        table.add_row(
            escape(r.case) if r.case != last else "",
            ("★ " if r.best else "") + r.backend,
            tp,
            "—" if r.p99_ms is None else f"{r.p99_ms:.2f}",
            str(r.errors),
            escape(r.verdict),
            escape(r.notes),
        )
        last = r.case
    console.print(table)
