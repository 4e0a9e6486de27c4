"""The report of one run as one self-contained HTML page, with its tables as CSV
and Markdown beside it.

::

    SQLite (scenarios.store) ─┐                     recommend.recommend_all ─┐
    locust CSVs, summary.json ├─▶ data.load_run ─▶ tables.case_table ────────┼─▶ run-N.html (plots inlined)
    pytest-benchmark JSON ────┘        │            questions.answer_all ────┼─▶ run-N.csv
                                       │            targets.check_all ───────┤
                                       └─ what is missing ───────────────────┴─▶ run-N.md

The page opens with the recommendation when the run measured the user's own
workload, and has a section of targets when its scenarios set some; the course's key
questions appear when the run has any of their scenarios.
"""

from __future__ import annotations

import datetime
import os
import statistics
import tempfile

from scenarios.store import DRIFT_LIMIT, experiment_of

from . import plots
from .analysis import median_of, ordered_variants, sweep_value
from .data import RunData, finite, load_run
from .external import benchmarks_html, loadtests_html
from .flame import profiles_html
from .markup import Cell, esc, figure, note, page, para, section, table
from .questions import Question, answer_all, breakdown, percentile_curve, plot_breakdown, queue_and_busy
from .recommend import Recommendation, recommend_all
from .tables import COLUMNS, case_table, cell_text, fmt, to_markdown
from .targets import TargetCheck, check_all

__all__ = ["SECTIONS", "default_path", "write_atomically", "write_report"]

#: every section of a run's page, in order; all but the first, targets and key
#: questions are always present (saying what is missing when it is)
SECTIONS = (
    ("recommendation", "Recommendation"),
    ("run", "Run"),
    ("warnings", "Warnings"),
    ("targets", "Targets"),
    ("questions", "Key questions"),
    ("scenarios", "Scenarios"),
    ("over-time", "Queue depth and busy workers"),
    ("loadtests", "Load tests (locust)"),
    ("benchmarks", "Micro-benchmarks (pytest-benchmark)"),
    ("missing", "Missing data"),
    ("files", "Tables as CSV and Markdown"),
)


def default_path(db: str, name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(db)), "reports", name)


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_report(
    db: str,
    run_id: int | None = None,
    *,
    out: str | None = None,
    loadtests_dir: str | None = None,
    benchmarks_path: str | None = None,
) -> str:
    """Write the report of ``run_id`` (default: the last run of ``db``) and its
    tables; return the HTML file's path. Raises :class:`reports.ReportError` only
    when there is no such database or run."""
    data = load_run(db, run_id, loadtests_dir=loadtests_dir, benchmarks_path=benchmarks_path)
    html_path = os.path.abspath(out or default_path(db, f"run-{data.run_id}.html"))
    stem = os.path.splitext(html_path)[0]
    csv_path, md_path = stem + ".csv", stem + ".md"
    cases = case_table(data)
    questions = answer_all(data)
    recommendations = recommend_all(data)
    checks = check_all(data)
    warnings = run_warnings(data)
    title = f"poolbench run {data.run_id}"
    shown = {
        "recommendation": bool(recommendations),
        "targets": bool(checks),
        # a run of the user's workloads, or of the contenders, alone answers none of the
        # course's questions: the section would only list what to run
        "questions": any(not q.missing for q in questions) or not (recommendations or checks),
    }
    sections = [(sid, name) for sid, name in SECTIONS if shown.get(sid, True)]

    body = {
        "recommendation": "".join(recommendation_html(r) for r in recommendations),
        "targets": targets_html(checks),
        "run": run_meta_html(data),
        "warnings": note(warnings, "warn", "No warnings: the machine was quiet and the control workload steady."),
        "questions": "".join(question_html(q) for q in questions),
        "scenarios": scenarios_html(data, cases),
        "over-time": over_time_html(data),
        "loadtests": loadtests_html(data),
        "benchmarks": benchmarks_html(data),
        "missing": note(data.missing, "missing", "Nothing is missing."),
        "files": para(f"CSV: {csv_path}")
        + para(f"Markdown: {md_path}")
        + para(
            f"Written {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}; remake it with "
            f"`poolbench report --run {data.run_id} --db {data.db}`."
        ),
    }
    html = page(title, sections, "".join(section(sid, name, body[sid]) for sid, name in sections))
    write_atomically(csv_path, cases.to_csv(index=False))
    write_atomically(md_path, markdown(data, title, warnings, questions, cases, recommendations, checks))
    write_atomically(html_path, html)
    return html_path


# ---------------------------------------------------------------- run and warnings


def run_warnings(data: RunData) -> list[str]:
    out = list(data.warnings)
    run = data.run
    cpus = run.get("cpu_count") or 1
    end = run.get("loadavg_end")
    if finite(end) and end > 0.5 * cpus:
        out.append(f"the machine was loaded at the end of the run (load average {end:.2f} on {cpus} CPUs)")
    flagged_drift = any("drift" in w for w in out)
    timings = [s for s in data.controls.seconds.tolist() if finite(s)] if not data.controls.empty else []
    if not flagged_drift and len(timings) >= 2:
        med = statistics.median(timings)
        drift = (max(timings) - min(timings)) / med if med else 0.0
        if drift > DRIFT_LIMIT:
            out.append(f"the control workload drifted by {drift:.0%} during the run (limit {DRIFT_LIMIT:.0%})")
    return out


def run_meta_html(data: RunData) -> str:
    run = data.run
    started, finished = run.get("started_at"), run.get("finished_at")
    took = ""
    try:
        took = f" ({(datetime.datetime.fromisoformat(finished) - datetime.datetime.fromisoformat(started)).total_seconds():.0f} s)"
    except (TypeError, ValueError):
        pass
    controls = [s for s in data.controls.seconds.tolist() if finite(s)] if not data.controls.empty else []
    control = "not recorded"
    if finite(run.get("control_median_s")):
        control = f"median {run['control_median_s']:.3f} s, drift {run.get('control_drift') or 0:.1%}"
    if controls:
        control += " — timings " + ", ".join(f"{s:.3f}" for s in controls) + " s"
    packages = run.get("packages") or {}
    items = [
        ("started", started),
        ("finished", (finished or "did not finish") + took),
        ("mode", f"{'quick' if run.get('quick') else 'full'}, {run.get('repeats')} repeats, interleaved"),
        ("implementations", ", ".join(run.get("implementations") or [])),
        ("scenarios", ", ".join(run.get("scenarios") or [])),
        ("machine", f"{run.get('cpu_count')} × {run.get('cpu_model')}; {run.get('platform')}"),
        ("Python", run.get("python")),
        ("load average", f"{fmt(run.get('loadavg_start'))} at the start, {fmt(run.get('loadavg_end'))} at the end"),
        ("control workload", control),
        ("git commit", run.get("git_commit") or "unknown"),
        ("packages", ", ".join(f"{k} {v}" for k, v in packages.items()) or "unknown"),
        ("database", data.db),
    ]
    ok = int((data.df.ok == 1).sum())
    items.append(("measurements", f"{ok} succeeded, {len(data.df) - ok} failed"))
    return '<dl class="meta">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


# ---------------------------------------------------------------- answers


def recommendation_html(r: Recommendation) -> str:
    parts = [f'<div class="recommendation" id="recommendation-{esc(r.scenario)}"><h3>{esc(r.scenario)}</h3>']
    if r.missing:
        parts.append(para(r.missing, "missing"))
    else:
        parts.append(para(r.answer, "answer"))
        parts.append('<ul class="details">' + "".join(f"<li>{esc(d)}</li>" for d in r.details) + "</ul>")
        parts.append(figure(r.plot, r.caption, f"recommendation for {r.scenario}"))
    parts.append("</div>")
    return "".join(parts)


def targets_html(checks: list[TargetCheck]) -> str:
    items = "".join(f'<li class="{"met" if c.met else "unmet"}">{esc(c.text)}</li>' for c in checks)
    return (
        para(
            "Ratios are oriented so that higher is better for ours (latency and memory inverted); the interval is "
            "the 95% CI of the per-repeat ratios, the verdict a Mann–Whitney test on the repeats."
        )
        + f'<ul class="targets">{items}</ul>'
    )


def question_html(q: Question) -> str:
    parts = [f'<div class="question" id="{esc(q.id)}"><h3>{esc(q.title)}</h3>']
    if q.missing:
        parts.append(para(q.missing, "missing"))
    else:
        parts.append(para(q.answer, "answer"))
        if q.details:
            parts.append('<ul class="details">' + "".join(f"<li>{esc(d)}</li>" for d in q.details) + "</ul>")
        parts.append(figure(q.plot, q.caption, q.title))
    parts.append("</div>")
    return "".join(parts)


# ---------------------------------------------------------------- scenarios


def case_rows_html(rows: list[dict]) -> list[tuple[str, list[Cell]]]:
    out = []
    numeric = {
        "tp_median",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "errors",
        "rejected_pct",
        "cpu_s",
        "peak_mb",
        "mem_bytes",
        "mem_allocs",
    }
    for row in rows:
        cls = "winner" if row.get("winner") else (row["status"] if row["status"] != "ok" else "")
        cells = []
        for col, _, _ in COLUMNS:
            sort = row.get(col) if col in numeric else (row.get("tp_low") if col == "tp_ci" else None)
            if col == "n":
                sort = row["n_ok"]
            cells.append(Cell(cell_text(row, col), sort if finite(sort) else None))
        out.append((cls, cells))
    return out


def scenario_params(params: dict) -> str:
    keys = ("jobs", "workers", "queue_size", "overflow", "arrival", "load", "rate", "timeout", "retries", "job_ms")
    facts = [f"{k} {params[k]}" for k in keys if params.get(k) not in (None, "", 0) or k in ("jobs", "workers")]
    if experiment_of(params) != "load":
        facts.append(f"experiment {experiment_of(params)}")
    for option, vals in (params.get("sweep") or {}).items():
        facts.append(f"sweep of {option} over {', '.join(map(str, vals))}")
    mix = [w.get("fn") or w.get("coro") or w.get("type") for w in params.get("workloads") or []]
    if any(w.get("type") is None for w in params.get("workloads") or []):
        facts.append(f"workload {', '.join(map(str, mix))}")
    return ", ".join(facts)


def scenarios_html(data: RunData, cases) -> str:
    if cases.empty:
        return para("No scenario has any measurement in this run.", "missing")
    out = [
        para(
            "Sortable: click a column header. ★ marks the winner of each case. Medians are over the repeats; "
            "the verdict against the winner is a Mann–Whitney test on the repeats (5 repeats are needed for "
            "it to be able to show a difference at 5%)."
        )
    ]
    for scenario in list(dict.fromkeys(cases.scenario.tolist())):
        params = data.params(scenario)
        rows = cases[cases.scenario == scenario].to_dict("records")
        body = [para(f"{params.get('description', '')} ({scenario_params(params)})")]
        body.append(table([(h, tip) for _, h, tip in COLUMNS], case_rows_html(rows)))
        body.append(prepared_html(data, scenario))
        body.append(scenario_plots(data, scenario, params))
        body.append(profiles_html(data, scenario))
        out.append(section(f"scenario-{scenario}", scenario, "".join(body), level=3, cls="scenario"))
    return "".join(out)


def prepared_html(data: RunData, scenario: str) -> str:
    """How each implementation was made and prepared before its clock started, as its
    measurements recorded it: so a reader can check that every side started alike."""
    ok = data.ok[data.ok.scenario == scenario]
    said_by = {}
    for row in ok.itertuples():
        prepared = getattr(row.findings, "prepared", "")
        if prepared and row.implementation not in said_by:
            said_by[row.implementation] = prepared
    if not said_by:
        return ""
    items = "".join(f"<li><b>{esc(i)}</b>: {esc(p)}</li>" for i, p in said_by.items())
    return f'<p>How each implementation was prepared before its clock started:</p><ul class="details">{items}</ul>'


def scenario_plots(data: RunData, scenario: str, params: dict) -> str:
    ok = data.ok[data.ok.scenario == scenario]
    if ok.empty:
        return para("No successful measurement: nothing to plot.", "missing")
    if experiment_of(params) != "load":
        return para("An experiment, not a load: its findings are under Key questions.", "")
    out = []
    variants = [v for v in ordered_variants(data, scenario) if v in set(ok.variant)]
    numeric = all(isinstance(sweep_value(v), float) for v in variants) and variants != [""]
    if ok.lat_p50_ms.notna().any():
        if variants == [""]:
            fig, (ax,) = plots.figure(1, width=5.5, height=2.6)
            percentile_curve(ax, data, scenario, "", "latency percentiles per implementation")
        elif numeric:
            fig, (ax,) = plots.figure(1, width=6.5, height=2.8)
            option = variants[0].partition("=")[0]
            for col, style in (("lat_p99_ms", "-o"), ("lat_p50_ms", "--x")):
                series = {}
                for b in data.implementations():
                    pts = [
                        (sweep_value(v), m, None, None)
                        for v in variants
                        if finite(m := median_of(data, scenario, v, b, col))
                    ]
                    if pts:
                        series[f"{b} {col[4:7]}"] = pts
                plots.lines(
                    ax,
                    series,
                    xlabel=option,
                    ylabel="latency ms (p99 solid, p50 dashed)",
                    logy=True,
                    logx=True,
                    style=style,
                    colors={k: plots.color(k.split()[0]) for k in series},
                )
            ax.set_title("latency percentiles against the sweep", fontsize=9)
        else:
            fig, axes = plots.figure(len(variants), width=3.6 * len(variants), height=2.6)
            for ax, v in zip(axes, variants, strict=False):
                percentile_curve(ax, data, scenario, v, v)
        out.append(
            figure(
                plots.to_uri(fig),
                "Latency percentiles from the stored p50/p95/p99/max of each repeat "
                "(median over repeats). Per-job samples are not recorded, so a full CDF cannot be drawn.",
                f"{scenario} latency",
            )
        )
    if ok.run_ms.notna().any():
        labels, parts = [], []
        for v in variants:
            for b in data.implementations():
                if len(ok[(ok.variant == v) & (ok.implementation == b)]):
                    labels.append(f"{v} · {b}" if v else b)
                    parts.append(breakdown(data, scenario, v, b))
        fig, (a1, a2) = plots.figure(2, width=10.0, height=0.9 + 0.26 * len(labels), left=1.7, wspace=1.9)
        plot_breakdown(a1, a2, labels, parts)
        out.append(
            figure(
                plots.to_uri(fig),
                "Time breakdown per implementation: per-job means of each repeat, median over repeats.",
                f"{scenario} time breakdown",
            )
        )
    return "".join(out)


def over_time_html(data: RunData) -> str:
    text, uri = queue_and_busy(data)
    return para(text) + figure(
        uri,
        "Time averages by Little's law from stored means, per case and implementation (not a time series).",
        "queue depth and busy workers",
    )


# ---------------------------------------------------------------- markdown


def markdown(
    data: RunData,
    title: str,
    warnings: list[str],
    questions: list[Question],
    cases,
    recommendations: list[Recommendation],
    checks: list[TargetCheck],
) -> str:
    run = data.run
    lines = [
        f"# {title}",
        "",
        f"{run.get('started_at')} — Python {run.get('python')} on {run.get('cpu_count')} × {run.get('cpu_model')} "
        f"— commit {(run.get('git_commit') or '?')[:10]} — {run.get('repeats')} repeats",
        "",
    ]
    for w in warnings:
        lines.append(f"> **warning:** {w}")
    if warnings:
        lines.append("")
    if recommendations:
        lines += ["## Recommendation", ""]
        lines += [f"- **{r.scenario}** {r.missing or r.answer}" for r in recommendations]
        lines.append("")
    if checks:
        lines += ["## Targets", ""] + [f"- {c.text}" for c in checks] + [""]
    if any(not q.missing for q in questions) or not (recommendations or checks):
        lines += ["## Key questions", ""]
        for q in questions:
            lines.append(f"- **{q.title}** {q.missing or q.answer}")
    lines += ["", "## Results", "", to_markdown(cases)]
    if data.missing:
        lines += ["## Missing data", ""] + [f"- {m}" for m in data.missing] + [""]
    return "\n".join(lines)
