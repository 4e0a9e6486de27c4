"""The run's summary: per case, each implementation's median throughput with its 95%
confidence interval, median p99 latency and errors, the best marked, the others
compared with it by a significance test, and the cells skipped with the reason."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from . import experiments, store
from .stats import Estimate, compare, median_ci

__all__ = ["Row", "print_summary", "summarize"]


@dataclass(frozen=True)
class Row:
    case: str
    implementation: str
    throughput: Estimate | None
    p99_ms: float | None
    errors: int
    verdict: str  # vs the best implementation of the case
    best: bool
    notes: str
    status: str = "ok"  # "ok", "failed" (every repeat), "skipped"


def _key(scenario: str, variant: str) -> str:
    return f"{scenario}[{variant}]" if variant else scenario


def _note(params: dict[str, Any], findings: Any) -> str:
    if findings is None:
        return ""
    return experiments.get(store.experiment_of(params)).note(findings)


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
        per_impl = {}
        for impl, g in group.groupby("implementation", sort=False):
            tp = [v for v in g.throughput.tolist() if v is not None and not math.isnan(v)]
            per_impl[impl] = (tp, g)
        with_tp = {i: tp for i, (tp, _) in per_impl.items() if tp}
        best = max(with_tp, key=lambda i: median_ci(with_tp[i]).median) if with_tp else None
        for impl, (tp, g) in per_impl.items():
            est = median_ci(tp) if tp else None
            verdict = ""
            if tp and best and impl != best:
                verdict = str(compare(tp, with_tp[best]))
            p99 = g.lat_p99_ms.dropna()
            params = g.params.iloc[-1] or {}
            notes = []
            if g.generator_bound.fillna(0).astype(int).any():
                notes.append("load generator was the bottleneck")
            note = _note(params, g.findings.iloc[-1])
            if note:
                notes.append(note)
            # an experiment's timeouts and cancels are what it measures, not errors
            counted = int(g.timed_out.fillna(0).sum()) if store.experiment_of(params) != "cancel_latency" else 0
            rows.append(
                Row(
                    _key(scenario, variant),
                    impl,
                    est,
                    float(p99.median()) if len(p99) else None,
                    int(g.failed.fillna(0).sum()) + counted,
                    verdict,
                    impl == best and len(with_tp) > 1,
                    " | ".join(notes),
                )
            )
    for _, r in df[(df.ok == 0) & df.skipped.notna()].iterrows():
        rows.append(Row(_key(r.scenario, r.variant), r.implementation, None, None, 0, "", False, r.skipped, "skipped"))
    for _, r in df[(df.ok == 0) & df.skipped.isna()].iterrows():
        rows.append(
            Row(_key(r.scenario, r.variant), r.implementation, None, None, 0, "", False, f"FAILED: {r.error}", "failed")
        )
    flags = run.get("flags")
    run["flags"] = json.loads(flags) if isinstance(flags, str) else []
    return run, rows


def print_summary(db: str, run_id: int, console: Any = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    run, rows = summarize(db, run_id)
    console = console or Console(width=None if Console().is_terminal else 180)
    console.print(
        f"[bold]poolbench run {run_id}[/] — {run['started_at']} — Python {run['python']} on "
        f"{run['cpu_count']} × {run['cpu_model']} — commit {(run['git_commit'] or '?')[:10]}"
    )
    if run.get("control_median_s"):
        console.print(f"control workload: median {run['control_median_s']:.3f} s, drift {run['control_drift']:.1%}")
    for flag in run["flags"]:
        console.print(f"[yellow]warning:[/] {flag}")
    table = Table(show_lines=False)
    for col in ("case", "implementation", "jobs/s median [95% CI]", "p99 ms", "errors", "vs best", "notes"):
        table.add_column(col, overflow="fold")
    last = None
    order = {case: i for i, case in enumerate(dict.fromkeys(r.case for r in rows))}
    for r in sorted(rows, key=lambda r: order[r.case]):
        tp = (
            "—"
            if r.throughput is None
            else f"{r.throughput.median:,.0f} [{r.throughput.low:,.0f}, {r.throughput.high:,.0f}]"
        )
        table.add_row(
            escape(r.case) if r.case != last else "",
            ("★ " if r.best else "") + escape(r.implementation),
            tp if r.status != "skipped" else "skipped",
            "—" if r.p99_ms is None else f"{r.p99_ms:.2f}",
            str(r.errors),
            escape(r.verdict),
            escape(r.notes),
        )
        last = r.case
    console.print(table)
