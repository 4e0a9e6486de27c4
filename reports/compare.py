"""Two runs side by side: every case and implementation of run A (the baseline) against
run B, each change decided by :func:`scenarios.stats.compare` on the repeats —
throughput (higher is better) and p99 latency (lower is better). Significant
changes are marked, regressions red and improvements green; everything else says
"no significant difference". A warning comes first when the runs' machines or
control-workload timings differ, since then a change may be the machine's."""

from __future__ import annotations

import datetime
import math
import os

from scenarios.stats import ALPHA, compare
from scenarios.store import DRIFT_LIMIT

from . import plots
from .analysis import min_p, values
from .data import RunData, case_key, finite, load_run
from .html import default_path, run_meta_html, run_warnings, write_atomically
from .markup import Cell, figure, note, page, para, section, table
from .tables import fmt

__all__ = ["SECTIONS", "changes", "machine_warnings", "write_comparison"]

SECTIONS = (
    ("runs", "Runs"),
    ("warnings", "Warnings"),
    ("changes", "Changes"),
    ("missing", "Missing data"),
    ("files", "Tables as CSV and Markdown"),
)

MACHINE_FIELDS = (("cpu_model", "CPU"), ("cpu_count", "CPU count"), ("platform", "platform"), ("python", "Python"))


def machine_warnings(a: RunData, b: RunData) -> list[str]:
    out = []
    for key, label in MACHINE_FIELDS:
        va, vb = a.run.get(key), b.run.get(key)
        if va != vb:
            out.append(
                f"the runs differ in {label}: {va} (run {a.run_id}) vs {vb} (run {b.run_id}) — "
                "a change may be the machine's, not the code's"
            )
    ca, cb = a.run.get("control_median_s"), b.run.get("control_median_s")
    if finite(ca) and finite(cb) and ca > 0:
        change = cb / ca - 1
        if abs(change) > DRIFT_LIMIT:
            out.append(
                f"the control workload took {abs(change):.0%} {'longer' if change > 0 else 'less'} in run "
                f"{b.run_id} than in run {a.run_id} ({ca:.3f} s vs {cb:.3f} s): the machine's speed differed; "
                "see the normalized ratio column"
            )
    elif not (finite(ca) and finite(cb)):
        out.append("a run has no control-workload timing: the machines' speeds cannot be compared")
    if a.run.get("quick") != b.run.get("quick"):
        out.append("one run is --quick and the other is not: their scenarios ran different numbers of jobs")
    for name in sorted(set(a.df.scenario) & set(b.df.scenario)):
        pa, pb = a.params(name), b.params(name)
        diff = [k for k in sorted(set(pa) | set(pb)) if k not in ("quick",) and pa.get(k) != pb.get(k)]
        if diff:
            out.append(f"scenario {name!r} was not the same in both runs ({', '.join(diff)} differ)")
    out += [f"run {a.run_id}: {w}" for w in run_warnings(a)]
    out += [f"run {b.run_id}: {w}" for w in run_warnings(b)]
    return out


def changes(a: RunData, b: RunData):
    """One row per (case, implementation) in either run, with both verdicts and the change."""
    import pandas as pd

    ca, cb = a.run.get("control_median_s"), b.run.get("control_median_s")
    speed = cb / ca if finite(ca) and finite(cb) and ca > 0 else None
    keys = []
    for d in (a, b):
        for rec in d.df[["scenario", "variant", "implementation"]].drop_duplicates().to_dict("records"):
            k = (rec["scenario"], rec["variant"], rec["implementation"])
            if k not in keys:
                keys.append(k)
    rows = []
    for scenario, variant, impl in keys:
        ta = list(values(a, scenario, variant, impl, "throughput").values())
        tb = list(values(b, scenario, variant, impl, "throughput").values())
        la = list(values(a, scenario, variant, impl, "lat_p99_ms").values())
        lb = list(values(b, scenario, variant, impl, "lat_p99_ms").values())
        row = {
            "case": case_key(scenario, variant),
            "implementation": impl,
            "tp_a": None,
            "tp_b": None,
            "ratio": None,
            "ratio_normalized": None,
            "tp_verdict": "",
            "tp_p": None,
            "p99_a": None,
            "p99_b": None,
            "p99_verdict": "",
            "p99_p": None,
            "change": "",
            "note": "",
        }
        if ta and tb:
            c = compare(tb, ta)
            row.update(tp_a=c.b.median, tp_b=c.a.median, ratio=c.ratio, tp_p=c.p_value, tp_verdict=c.verdict)
            if speed and finite(c.ratio):
                row["ratio_normalized"] = c.ratio * speed
        if la and lb:
            c = compare(lb, la, higher_is_better=False)
            row.update(p99_a=c.b.median, p99_b=c.a.median, p99_p=c.p_value, p99_verdict=c.verdict)
        verdicts = {row["tp_verdict"].split(" ")[0], row["p99_verdict"].split(" ")[0]}
        if "slower" in verdicts and "faster" in verdicts:
            row["change"] = "mixed"
        elif "slower" in verdicts:
            row["change"] = "regression"
        elif "faster" in verdicts:
            row["change"] = "improvement"
        elif (ta or la) and (tb or lb):
            row["change"] = "no significant difference"
        else:
            in_a = bool(
                len(a.df[(a.df.scenario == scenario) & (a.df.variant == variant) & (a.df.implementation == impl)])
            )
            in_b = bool(
                len(b.df[(b.df.scenario == scenario) & (b.df.variant == variant) & (b.df.implementation == impl)])
            )
            row["change"] = "not comparable"
            row["note"] = (
                f"only in run {a.run_id}"
                if in_a and not in_b
                else f"only in run {b.run_id}"
                if in_b and not in_a
                else "no successful measurement in one of the runs"
            )
        n_a, n_b = len(ta or la), len(tb or lb)
        if row["change"] == "no significant difference" and min_p(n_a, n_b) >= ALPHA:
            row["note"] = f"{n_a} and {n_b} repeats: too few for the test to show a difference at {ALPHA:.0%}"
        rows.append(row)
    return pd.DataFrame(rows)


def write_comparison(
    db: str,
    run_a: int,
    run_b: int,
    *,
    out: str | None = None,
    loadtests_dir: str | None = None,
    benchmarks_path: str | None = None,
) -> str:
    """Compare run_b against the baseline run_a; return the HTML file's path."""
    a = load_run(db, run_a, loadtests_dir=loadtests_dir, benchmarks_path=benchmarks_path)
    b = load_run(db, run_b, loadtests_dir=loadtests_dir, benchmarks_path=benchmarks_path)
    table_df = changes(a, b)
    html_path = os.path.abspath(out or default_path(db, f"compare-{run_a}-{run_b}.html"))
    stem = os.path.splitext(html_path)[0]
    csv_path, md_path = stem + ".csv", stem + ".md"
    warnings = machine_warnings(a, b)
    title = f"poolbench: run {run_b} against run {run_a}"
    counts = table_df.change.value_counts().to_dict() if not table_df.empty else {}
    summary = ", ".join(
        f"{counts.get(k, 0)} {k}" + ("s" if counts.get(k, 0) != 1 and k in ("regression", "improvement") else "")
        for k in ("regression", "improvement", "mixed", "no significant difference", "not comparable")
        if counts.get(k)
    )
    body = {
        "runs": f"<h3>Run {a.run_id} (baseline)</h3>"
        + run_meta_html(a)
        + f"<h3>Run {b.run_id}</h3>"
        + run_meta_html(b),
        "warnings": note(warnings, "warn", "No warnings: same machine, same control-workload speed, no flags."),
        "changes": para(f"Run {b.run_id} against run {a.run_id}: {summary or 'nothing to compare'}.")
        + _changes_table(table_df, a.run_id, b.run_id)
        + _changes_plot(table_df, a.run_id, b.run_id),
        "missing": note(
            [f"run {a.run_id}: {m}" for m in a.missing if "load-test" not in m and "micro-bench" not in m]
            + [f"run {b.run_id}: {m}" for m in b.missing if "load-test" not in m and "micro-bench" not in m],
            "missing",
            "Nothing is missing.",
        ),
        "files": para(f"CSV: {csv_path}")
        + para(f"Markdown: {md_path}")
        + para(
            f"Written {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}; remake it with "
            f"`poolbench report --compare {run_a} {run_b} --db {db}`."
        ),
    }
    html = page(title, SECTIONS, "".join(section(sid, name, body[sid]) for sid, name in SECTIONS))
    write_atomically(csv_path, table_df.to_csv(index=False))
    write_atomically(md_path, _markdown(title, warnings, summary, table_df, a.run_id, b.run_id))
    write_atomically(html_path, html)
    return html_path


HEADERS = (
    ("case", ""),
    ("implementation", ""),
    ("jobs/s A", "median over run A's repeats"),
    ("jobs/s B", ""),
    ("B / A", "ratio of the medians"),
    ("B / A normalized", "the ratio × (control time B / control time A): corrected for the machine's speed"),
    ("throughput", "Mann-Whitney test of B's repeats against A's"),
    ("p99 ms A", ""),
    ("p99 ms B", ""),
    ("p99 latency", "lower is better"),
    ("change", ""),
    ("note", ""),
)


def _cls(verdict: str) -> str:
    return {"faster": "improvement", "slower": "regression"}.get(verdict.split(" ")[0], "same")


def _changes_table(df, run_a: int, run_b: int) -> str:
    rows = []
    for r in df.to_dict("records"):
        cls = {"regression": "regression", "mixed": "regression", "improvement": "improvement"}.get(r["change"], "")
        tp_text = r["tp_verdict"] + (f" (p={r['tp_p']:.3f})" if finite(r["tp_p"]) else "")
        p99_text = r["p99_verdict"] + (f" (p={r['p99_p']:.3f})" if finite(r["p99_p"]) else "")
        rows.append(
            (
                cls,
                [
                    Cell(r["case"]),
                    Cell(r["implementation"]),
                    Cell(fmt(r["tp_a"]), r["tp_a"]),
                    Cell(fmt(r["tp_b"]), r["tp_b"]),
                    Cell(f"{r['ratio']:.2f}×" if finite(r["ratio"]) else "—", r["ratio"]),
                    Cell(
                        f"{r['ratio_normalized']:.2f}×" if finite(r["ratio_normalized"]) else "—", r["ratio_normalized"]
                    ),
                    Cell(tp_text, cls=_cls(r["tp_verdict"])),
                    Cell(fmt(r["p99_a"]), r["p99_a"]),
                    Cell(fmt(r["p99_b"]), r["p99_b"]),
                    Cell(p99_text, cls=_cls(r["p99_verdict"])),
                    Cell(
                        r["change"],
                        cls={"regression": "regression", "mixed": "regression", "improvement": "improvement"}.get(
                            r["change"], "same"
                        ),
                    ),
                    Cell(r["note"]),
                ],
            )
        )
    return table(
        [
            (h.replace("A", f"A={run_a}").replace("B", f"B={run_b}") if h.startswith(("jobs", "p99 ms")) else h, tip)
            for h, tip in HEADERS
        ],
        rows,
        caption=f"A = run {run_a} (baseline), B = run {run_b}. Red: significantly worse; green: significantly better.",
    )


def _changes_plot(df, run_a: int, run_b: int) -> str:
    d = df[df.ratio.map(finite)] if not df.empty else df
    if d.empty:
        return para("No case has throughput in both runs: nothing to plot.", "missing")
    labels = [f"{c} · {b}" for c, b in zip(d.case, d.implementation, strict=False)]
    colors = [
        "#d62728" if ch in ("regression", "mixed") else "#2ca02c" if ch == "improvement" else "#9e9e9e"
        for ch in d.change
    ]
    fig, (ax,) = plots.figure(1, width=8.0, height=0.9 + 0.24 * len(labels), left=2.4)
    ax.barh(range(len(labels)), [math.log2(r) if r > 0 else 0.0 for r in d.ratio], color=colors)
    ax.axvline(0, color="#333", linewidth=0.8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"log2(jobs/s of run {run_b} / run {run_a}): right is faster", fontsize=8)
    ax.set_title("throughput change per case and implementation", fontsize=9)
    return figure(
        plots.to_uri(fig),
        "Red: significant regression; green: significant improvement; grey: no significant difference.",
        "throughput changes",
    )


def _markdown(title: str, warnings: list[str], summary: str, df, run_a: int, run_b: int) -> str:
    lines = [f"# {title}", "", summary + ".", ""]
    lines += [f"> **warning:** {w}" for w in warnings]
    head = [
        "case",
        "implementation",
        f"jobs/s {run_a}",
        f"jobs/s {run_b}",
        "B/A",
        "throughput",
        f"p99 {run_a}",
        f"p99 {run_b}",
        "p99",
        "change",
    ]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    mark = {"regression": "🔴 regression", "mixed": "🔴 mixed", "improvement": "🟢 improvement"}
    for r in df.to_dict("records"):
        cells = [
            r["case"],
            r["implementation"],
            fmt(r["tp_a"]),
            fmt(r["tp_b"]),
            f"{r['ratio']:.2f}×" if finite(r["ratio"]) else "—",
            r["tp_verdict"],
            fmt(r["p99_a"]),
            fmt(r["p99_b"]),
            r["p99_verdict"],
            mark.get(r["change"], r["change"]),
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
