"""Sections from data made outside the run: locust load tests (``poolbench
loadtest``) and the pytest-benchmark micro-benchmarks (``make bench``)."""

from __future__ import annotations

from scenarios.stats import median_ci

from . import plots
from .analysis import contrast, versus
from .data import LoadTest, RunData, finite
from .markup import Cell, esc, figure, para, table
from .tables import fmt

__all__ = ["benchmarks_html", "loadtests_html"]

BACKPRESSURE = "503"


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if finite(v) else None


def _stats_table(lt: LoadTest) -> str:
    cols = [
        ("Type", ""),
        ("Name", ""),
        ("Request Count", ""),
        ("Failure Count", ""),
        ("Requests/s", ""),
        ("50%", "ms"),
        ("95%", "ms"),
        ("99%", "ms"),
        ("Max Response Time", "ms"),
    ]
    cols = [(c, t) for c, t in cols if c in lt.stats.columns]
    rows = []
    for rec in lt.stats.to_dict("records"):
        cells = []
        for c, _ in cols:
            v = rec.get(c)
            n = _num(v)
            cells.append(Cell(fmt(n) if n is not None else ("" if v is None or v != v else v), n))
        rows.append(("", cells))
    return table(
        [(c + (f" ({t})" if t else ""), "") for c, t in cols],
        rows,
        caption="locust statistics per request name (JOB rows: a job's time from accepted to finished)",
    )


def _backpressure_share(lt: LoadTest) -> tuple[float, float] | None:
    """(503 responses, all POST /jobs responses) from *_stats.csv."""
    s = lt.stats
    if s is None or "Name" not in s.columns or "Request Count" not in s.columns:
        return None
    names = s.Name.astype(str)
    post = s[names.str.startswith("POST")]
    if post.empty:
        return None
    b503 = post[post.Name.astype(str).str.contains(BACKPRESSURE)]["Request Count"].sum()
    return float(b503), float(post["Request Count"].sum())


def _history_plot(lt: LoadTest) -> tuple[str | None, str]:
    h = lt.history
    needed = {"Timestamp", "Name", "Requests/s", "Failures/s"}
    if h is None or h.empty or not needed <= set(h.columns):
        return None, "no usable *_stats_history.csv: nothing to plot over time"
    agg = h[h.Name.astype(str) == "Aggregated"].copy()
    if agg.empty:
        return None, "the stats history has no Aggregated rows"
    t0 = agg.Timestamp.min()
    agg["t"] = agg.Timestamp - t0
    fig, (a1, a2, a3) = plots.figure(3, width=10.5, height=2.8, wspace=1.2)
    a1.plot(agg.t, agg["Requests/s"], "-", color=plots.color(lt.backend), label="requests/s")
    a1.plot(agg.t, agg["Failures/s"], "-", color="#d62728", label="failures/s")
    if "User Count" in agg.columns:
        ax_u = a1.twinx()
        ax_u.plot(agg.t, agg["User Count"], ":", color="#777", label="users")
        ax_u.set_ylabel("users", fontsize=8)
        ax_u.tick_params(labelsize=8)
    a1.set_xlabel("seconds", fontsize=8)
    a1.set_title("requests/s (all names)", fontsize=9)
    plots.legend(a1, loc="lower right")
    for col, style in (("50%", "-"), ("95%", "--"), ("99%", ":")):
        if col in agg.columns:
            a2.plot(agg.t, agg[col], style, color=plots.color(lt.backend), label=col)
    a2.set_xlabel("seconds", fontsize=8)
    a2.set_ylabel("ms", fontsize=8)
    a2.set_title("response time percentiles (all names)", fontsize=9)
    plots.legend(a2)
    per_name = h[h.Name.astype(str).str.contains(BACKPRESSURE)]
    post = h[h.Name.astype(str).str.startswith("POST")]
    note = ""
    if not per_name.empty and not post.empty:
        b = per_name.groupby("Timestamp")["Requests/s"].sum()
        p = post.groupby("Timestamp")["Requests/s"].sum()
        share = (100 * b / p.where(p > 0)).dropna()
        a3.plot(share.index - t0, share.values, "-", color="#d62728")
        a3.set_title("503 back-pressure, % of POST /jobs", fontsize=9)
    else:
        a3.plot(agg.t, 100 * agg["Failures/s"] / agg["Requests/s"].where(agg["Requests/s"] > 0), "-", color="#d62728")
        a3.set_title("failures, % of requests", fontsize=9)
        note = (
            "The 503 rate over time is not recorded: the stats history holds only the Aggregated row "
            "(locust's --csv-full-history would add one row per name). The right panel shows failures instead; "
            "declared 503 back-pressure answers count as successes, not failures."
        )
    a3.set_xlabel("seconds", fontsize=8)
    a3.set_ylabel("%", fontsize=8)
    return plots.to_uri(fig), note


def loadtests_html(data: RunData) -> str:
    if not data.loadtests:
        return para(
            "No load-test data: `poolbench loadtest` has not stored any locust results next to this database.",
            "missing",
        )
    out = []
    for lt in data.loadtests:
        cfg = (lt.summary or {}).get("config") or {}
        title = f"{lt.backend} — {lt.stamp}"
        facts = [f"{k} {cfg[k]}" for k in ("shape", "users", "duration_s", "workers", "queue_size") if k in cfg]
        out.append(f"<h3>{esc(title)}</h3>")
        out.append(para(f"From {lt.path}" + (f": {', '.join(facts)}." if facts else ".")))
        share = _backpressure_share(lt)
        if share is not None:
            b503, total = share
            out.append(
                para(
                    f"POST /jobs answered with 503 back-pressure: {fmt(b503, 'int')} of {fmt(total, 'int')} "
                    f"({100 * b503 / total if total else 0:.1f}%)."
                )
            )
        summary = lt.summary or {}
        if (summary.get("locust") or {}).get("bottleneck"):
            out.append(para("Warning: " + str(summary["locust"].get("bottleneck_reason")), "missing"))
        if lt.stats is not None and not lt.stats.empty:
            out.append(_stats_table(lt))
        uri, note = _history_plot(lt)
        out.append(figure(uri, f"locust over time, {title}. 'All names' includes the JOB rows.", f"locust {title}"))
        if note:
            out.append(para(note, "missing"))
        if lt.failures is not None and not lt.failures.empty:
            rows = [("", [Cell(r.get(c)) for c in lt.failures.columns]) for r in lt.failures.to_dict("records")]
            out.append(table([(c, "") for c in lt.failures.columns], rows, caption="failures"))
        for p in lt.problems:
            out.append(para(f"Missing: {p}", "missing"))
    return "".join(out)


def benchmarks_html(data: RunData) -> str:
    bench = data.benchmarks
    if bench is None or bench.empty:
        return para("No micro-benchmarks: run `make bench` (it writes results/benchmarks.json).", "missing")
    meta = data.bench_meta
    out = [
        para(
            f"pytest-benchmark results from {meta.get('path')} ({meta.get('datetime')}, commit "
            f"{(meta.get('commit') or '?')[:10]}{' with local changes' if meta.get('dirty') else ''})."
        )
    ]
    rows = []
    groups = list(dict.fromkeys(bench.group.tolist()))
    sentences = []
    for grp in groups:
        g = bench[bench.group == grp]
        ests = {}
        for rec in g.to_dict("records"):
            rounds = rec["round_jobs_per_s"]
            est = median_ci(rounds) if rounds else None
            ests[rec["contender"]] = (est, rounds, rec)
            med = est.median if est else rec["jobs_per_s"]
            rows.append(
                (
                    "",
                    [
                        Cell(grp),
                        Cell(rec["contender"]),
                        Cell(fmt(rec["jobs"], "int"), rec["jobs"]),
                        Cell(fmt((rec["median_s"] or 0) * 1000), (rec["median_s"] or 0) * 1000),
                        Cell(fmt(med), med),
                        Cell(f"{fmt(est.low)}–{fmt(est.high)}" if est and est.n > 1 else "—", est.low if est else None),
                        Cell(fmt(rec["rounds"], "int"), rec["rounds"]),
                        *(
                            Cell(fmt(v), v if finite(v) else None)
                            for v in (rec.get("mem_bytes_per_job"), rec.get("mem_allocs_per_job"))
                        ),
                    ],
                )
            )
        ranked = sorted((k for k in ests if ests[k][1]), key=lambda k: -ests[k][0].median)
        if len(ranked) >= 2:
            a, b = ranked[0], ranked[1]
            r = contrast(dict(enumerate(ests[a][1])), dict(enumerate(ests[b][1])), a, b, paired=False)
            sentences.append(
                f"{grp}: {a} had the highest median round; it was {versus(r, more='faster than', less='slower than')}"
            )
    out.append(
        table(
            [
                ("group", ""),
                ("contender", ""),
                ("jobs per round", ""),
                ("median round ms", ""),
                ("jobs/s", "jobs per round / round time, median round"),
                ("95% CI", "bootstrap over rounds"),
                ("rounds", ""),
                ("B/job", "bytes a submitted job holds (tracemalloc, a pass of its own; this process only)"),
                ("allocs/job", "memory blocks a submitted job holds (same pass)"),
            ],
            rows,
            caption="micro-benchmarks: each round submits a batch and waits for it",
        )
    )
    if sentences:
        out.append(para("; ".join(sentences) + "."))
    most = max(len(bench[bench.group == g]) for g in groups)
    fig, axes = plots.figure(
        len(groups), width=min(11.0, 4.6 * len(groups)), height=0.9 + 0.28 * most, left=2.0, wspace=2.2
    )
    for ax, grp in zip(axes, groups, strict=False):
        bars = [
            (str(r["contender"]), median_ci(r["round_jobs_per_s"]) if r["round_jobs_per_s"] else r["jobs_per_s"])
            for r in bench[bench.group == grp].to_dict("records")
        ]
        plots.hbars(ax, bars, xlabel="jobs/s (median round, 95% CI)", title=f"group {grp!r}")
    out.append(
        figure(
            plots.to_uri(fig),
            "pytest-benchmark: jobs/s per contender (median round, 95% CI over rounds)",
            "micro-benchmarks",
        )
    )
    return "".join(out)
