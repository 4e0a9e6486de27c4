"""The per-case tables: :func:`scenarios.summary.summarize` rows (median
throughput with its 95% CI, the winner, the verdict against it) joined with the
rest of what each measurement recorded (latency percentiles, errors, rejections,
CPU time, peak memory), plus the implementations that were skipped (with the
reason), absent or failed. Also as CSV and Markdown, for CI logs and pull requests."""

from __future__ import annotations

import math
from typing import Any

from scenarios.spec import ImplSpec
from scenarios.store import experiment_of

from .data import RunData, case_key, finite

__all__ = ["COLUMNS", "case_table", "fmt", "to_markdown"]

#: (column, header, tooltip) of the HTML and Markdown tables, in order
COLUMNS = (
    ("case", "case", "scenario[sweep value]"),
    (
        "implementation",
        "implementation",
        "★ the winner: highest median throughput (lowest median p50 latency where no throughput)",
    ),
    ("tp_median", "jobs/s", "median throughput over the repeats"),
    ("tp_ci", "95% CI", "bootstrap 95% confidence interval of the median"),
    ("p50_ms", "p50 ms", "median over repeats of each repeat's latency percentile"),
    ("p95_ms", "p95 ms", ""),
    ("p99_ms", "p99 ms", ""),
    ("errors", "errors", "failed + timed-out jobs, all repeats"),
    ("rejected_pct", "rejected %", "jobs refused with QueueFull, of all submitted, all repeats"),
    ("cpu_s", "CPU s", "median CPU seconds of the pool's processes per repeat"),
    ("peak_mb", "peak MB", "highest resident memory of the measuring process and its workers"),
    (
        "mem_bytes",
        "B/job",
        "bytes a submitted job holds (tracemalloc, a pass of its own after the timing; this process only)",
    ),
    ("mem_allocs", "allocs/job", "memory blocks a submitted job holds (same pass)"),
    ("n", "repeats", "repeats that succeeded / that ran"),
    ("vs_best", "vs winner", "Mann-Whitney test against the winner's repeats"),
    ("notes", "notes", ""),
)


def _median(series) -> float | None:
    values = [v for v in series.tolist() if finite(v)]
    if not values:
        return None
    values.sort()
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def case_table(data: RunData):
    """One row per (case, implementation) that ran, was skipped, or should have run."""
    import pandas as pd

    df = data.df
    by_key = {}
    for r in data.rows:
        if r.status == "ok":
            by_key[(r.case, r.implementation)] = r
    out: list[dict[str, Any]] = []
    for scenario in data.scenarios():
        sdf = df[df.scenario == scenario]
        if sdf.empty:
            continue
        params = data.params(scenario)
        # what the run planned for this scenario (stored with it), then what it has rows of
        planned = [ImplSpec.model_validate(s).shown for s in params.get("implementations") or []]
        expected = list(dict.fromkeys(planned + sdf.implementation.tolist()))
        for variant in list(dict.fromkeys(sdf.variant.tolist())):
            vdf = sdf[sdf.variant == variant]
            key = case_key(scenario, variant)
            case_rows = []
            for impl in expected:
                g = vdf[vdf.implementation == impl]
                ok = g[g.ok == 1]
                skipped = g[g.skipped.notna()]
                failed = g[(g.ok == 0) & g.skipped.isna()]
                row: dict[str, Any] = {
                    "scenario": scenario,
                    "variant": variant,
                    "case": key,
                    "implementation": impl,
                    "status": "ok",
                    "n_ok": len(ok),
                    "n_run": len(g),
                }
                summary = by_key.get((key, impl))
                est = summary.throughput if summary else None
                row["tp_median"] = est.median if est else None
                row["tp_low"] = est.low if est else None
                row["tp_high"] = est.high if est else None
                row["winner"] = bool(summary and summary.best)
                row["vs_best"] = summary.verdict if summary else ""
                notes = [summary.notes] if summary and summary.notes else []
                for col, name in (
                    ("lat_p50_ms", "p50_ms"),
                    ("lat_p95_ms", "p95_ms"),
                    ("lat_p99_ms", "p99_ms"),
                    ("cpu_s", "cpu_s"),
                ):
                    row[name] = _median(ok[col]) if len(ok) else None
                for col, name in (("mem_bytes_per_job", "mem_bytes"), ("mem_allocs_per_job", "mem_allocs")):
                    row[name] = _median(ok[col]) if len(ok) and col in ok else None
                peaks = [v for v in ok.peak_rss_mb.tolist() if finite(v)]
                row["peak_mb"] = max(peaks) if peaks else None
                # An experiment's counts are its findings (deliberate timeouts, tests failed), not errors.
                row["errors"] = (
                    int(ok.failed.fillna(0).sum() + ok.timed_out.fillna(0).sum())
                    if len(ok) and experiment_of(params) == "load"
                    else None
                )
                submitted = ok.jobs.fillna(0).sum()
                row["rejected_pct"] = (100.0 * ok.rejected.fillna(0).sum() / submitted) if submitted else None
                if len(skipped):
                    row["status"] = "skipped"
                    row["n_run"] = 0
                    notes = [f"skipped: {skipped.skipped.iloc[0]}"]
                elif g.empty:
                    row["status"] = "absent"
                    notes = ["not measured: this implementation has no measurement of this case"]
                elif ok.empty:
                    row["status"] = "failed"
                    notes = [f"FAILED ({len(failed)}/{len(g)} repeats): {_first_error(failed)}"]
                elif len(failed):
                    row["status"] = "partial"
                    notes.append(f"{len(failed)} of {len(g)} repeats failed: {_first_error(failed)}")
                row["notes"] = " | ".join(notes)
                case_rows.append(row)
            _latency_winner(case_rows)
            out.extend(case_rows)
    table = pd.DataFrame(out)
    if table.empty:
        table = pd.DataFrame(
            columns=[
                "scenario",
                "variant",
                "case",
                "implementation",
                "status",
                "n_ok",
                "n_run",
                "tp_median",
                "tp_low",
                "tp_high",
                "winner",
                "vs_best",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "cpu_s",
                "peak_mb",
                "mem_bytes",
                "mem_allocs",
                "errors",
                "rejected_pct",
                "notes",
            ]
        )
    return table


def _latency_winner(rows: list[dict]) -> None:
    """Cases without throughput (cancel latency): the lowest median p50 wins."""
    if any(r["winner"] for r in rows) or any(finite(r["tp_median"]) for r in rows):
        return
    timed = [r for r in rows if finite(r["p50_ms"])]
    if len(timed) > 1:
        min(timed, key=lambda r: r["p50_ms"])["winner"] = True


def _first_error(failed) -> str:
    errors = [e for e in failed.error.tolist() if isinstance(e, str) and e]
    return errors[0] if errors else "no error recorded"


# ---------------------------------------------------------------- formatting


def fmt(value: Any, kind: str = "") -> str:
    """Numbers as people read them: 52,351 jobs/s, 0.25 ms, 3.1 %."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    if kind == "int":
        return f"{int(value):,}"
    v = float(value)
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def cell_text(row: dict, column: str) -> str:
    if column == "implementation":
        return ("★ " if row.get("winner") else "") + str(row["implementation"])
    if column == "tp_ci":
        if not finite(row.get("tp_low")):
            return "—"
        return f"{fmt(row['tp_low'])}–{fmt(row['tp_high'])}"
    if column == "n":
        return f"{row['n_ok']}/{row['n_run']}"
    if column == "errors":
        return fmt(row.get("errors"), "int")
    if column == "mem_allocs":
        v = row.get(column)
        return f"{v:.1f}" if finite(v) else "—"
    return fmt(row.get(column)) if column not in ("case", "vs_best", "notes") else str(row.get(column) or "")


def to_markdown(table, columns=COLUMNS) -> str:
    head = [h for _, h, _ in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in table.to_dict("records"):
        cells = [cell_text(row, c).replace("|", "\\|").replace("\n", " ") for c, _, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
