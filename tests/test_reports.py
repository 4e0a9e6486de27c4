"""The reports, built from a small real run: the page parses, every section is
there, every image decodes, the answers are the data's; missing and partial data
give a report that says so; compare mode marks significant changes; and the page
opened in real headless Chromium renders, sorts, and logs no error."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sqlite3
import statistics
from html.parser import HTMLParser

import pytest
from conftest import as_users_run, once_for_all_workers

from reports import ReportError, write_comparison, write_report
from reports.browser import BrowserError, check_page, find_chromium
from reports.compare import SECTIONS as COMPARE_SECTIONS
from reports.html import SECTIONS
from scenarios import runner, spec, store
from scenarios.result import Result
from scenarios.stats import median_ci

BACKENDS = ("thread", "process", "asyncio")

# Real scenarios, shrunk: the report knows the course's scenarios by name.
TINY = {
    "cpu": {"jobs": 30, "workers": 2, "implementations": BACKENDS},
    "io": {"jobs": 40, "workers": 4, "implementations": ("thread", "asyncio")},
    "workers_sweep": {"jobs": 30, "sweep": {"workers": (1, 4)}, "implementations": ("thread",)},
    "saturation": {"jobs": 40, "sweep": {"load": (0.5, 2.0)}, "implementations": ("thread",)},
    "priority": {"jobs": 60, "implementations": ("thread",)},
    "cancel_latency": {"jobs": 4, "implementations": ("thread", "asyncio")},
    "primitives": {"jobs": 400},
}
#: a run of the course's scenarios: no recommendation (no workload of the user's), no targets
SHOWN = [sid for sid, _ in SECTIONS if sid not in ("recommendation", "targets")]


def tiny_scenarios() -> list[spec.Scenario]:
    return [spec.builtin()[name].changed(quick={}, **changes) for name, changes in TINY.items()]


@pytest.fixture(scope="module")
def tiny(request, tmp_path_factory):
    """(db, run_id, report) of a real run of the tiny scenarios, 2 repeats, with the
    report `poolbench run` writes at its end (write_report(db, run_id)): made once for
    every xdist worker; the tests only read them."""

    def make(directory):
        db = str(directory / "poolbench.db")
        with as_users_run():
            run_id = runner.run(runner.RunOptions(scenarios=tiny_scenarios(), repeats=2, db=db))
        (directory / "run.json").write_text(json.dumps([db, run_id, write_report(db, run_id)]))

    made = once_for_all_workers(request, tmp_path_factory, "tiny-run", make)
    return tuple(json.loads((made / "run.json").read_text()))


@pytest.fixture(scope="module")
def tiny_run(tiny):
    """(db, run_id)"""
    return tiny[:2]


@pytest.fixture(scope="module")
def report(tiny):
    """The report's HTML file."""
    return tiny[2]


class PageParser(HTMLParser):
    """Collects sections, images, links and scripts; checks that tags balance."""

    VOID = frozenset({"meta", "link", "img", "br", "hr", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: list[str] = []  # top level
        self.subsections: list[str] = []
        self.ids: list[str] = []
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "section" not in self.stack:
            self.sections.append(a.get("id"))
        elif tag == "section":
            self.subsections.append(a.get("id"))
        if tag not in self.VOID:
            self.stack.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self.tables += 1
        for key in ("src", "href"):
            if key in a and tag != "img":
                self.urls.append(a[key])

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def parse(path: str) -> tuple[PageParser, str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    p = PageParser()
    p.feed(text)
    p.close()
    assert text.startswith("<!DOCTYPE html>")
    assert not p.errors and p.stack == [], (p.errors, p.stack)
    return p, text


def decode_png(uri: str):
    from PIL import Image

    assert uri.startswith("data:image/png;base64,"), uri[:40]
    raw = base64.b64decode(uri.split(",", 1)[1], validate=True)
    Image.open(io.BytesIO(raw)).verify()
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img


def answer(text: str, qid: str) -> str:
    m = re.search(rf'<div class="question" id="{qid}">.*?<p class="(answer|missing)">(.*?)</p>', text, re.S)
    assert m, qid
    return m.group(2)


def test_report_from_a_real_run(tiny_run, report):
    db, run_id = tiny_run
    path = report
    assert path.endswith(f"reports/run-{run_id}.html")
    page, text = parse(path)
    assert page.sections == SHOWN
    assert page.subsections == [f"scenario-{name}" for name in TINY]
    # self-contained: no URL but in-page anchors and data URIs
    assert all(u.startswith(("#", "data:")) for u in page.urls), page.urls
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    assert len(page.images) >= 15
    for uri in page.images:
        img = decode_png(uri)
        assert img.width > 100 and img.height > 100
        assert sum(1 for n in img.convert("L").histogram() if n) > 2  # not a flat image

    # answers computed from the data: the CPU question's ratio is the median of
    # the per-repeat throughput ratios of the fastest backend to each other one
    df = store.load_measurements(db, run_id)
    cpu = df[(df.scenario == "cpu") & (df.ok == 1)]
    per = {b: dict(zip(g.repeat, g.throughput, strict=False)) for b, g in cpu.groupby("implementation")}
    winner = max(per, key=lambda b: statistics.median(per[b].values()))
    cpu_answer = answer(text, "q-cpu")
    assert f"{winner} had the highest median throughput on 1 ms CPU jobs" in cpu_answer
    for other in set(per) - {winner}:
        point = statistics.median(per[winner].values()) / statistics.median(per[other].values())
        est = median_ci([per[winner][r] / per[other][r] for r in sorted(per[winner])])
        # 2 repeats can never show a difference: no direction is claimed
        assert (
            f"{winner} was not significantly different from {other} ({point:.2f}×; 95% CI of the per-repeat "
            f"ratios {est.low:.2f}×–{est.high:.2f}×, 2 paired repeats; too few repeats (2 and 2)"
        ) in cpu_answer
    for qid in ("q-io", "q-workers", "q-saturation", "q-priority", "q-cancel", "q-primitives", "q-breakdown"):
        assert not answer(text, qid).startswith("Not answered"), qid
    assert "no successful measurement of &#x27;failing&#x27;" in answer(text, "q-retries")
    # what the data cannot support is said, not invented
    assert "a full CDF cannot be drawn" in text and "Little&#x27;s law" in text
    assert "No load-test data" in text and "no micro-benchmarks" in text

    # tables as CSV and Markdown beside the page
    import pandas as pd

    table = pd.read_csv(path[:-5] + ".csv")
    assert {"case", "implementation", "tp_median", "tp_low", "tp_high", "p99_ms", "winner"} <= set(table.columns)
    assert set(table[table.case == "cpu"].implementation) == set(BACKENDS)
    assert table[table.case == "cpu"].winner.sum() == 1
    assert set(table[table.scenario == "workers_sweep"].case) == {
        "workers_sweep[workers=1]",
        "workers_sweep[workers=4]",
    }
    with open(path[:-5] + ".md", encoding="utf-8") as f:
        md = f.read()
    assert md.startswith(f"# poolbench run {run_id}") and "| case | implementation | jobs/s |" in md
    assert f"| cpu | ★ {winner} |" in md


def test_cli_writes_the_last_run_deterministically(tiny_run, report, tmp_path, capsys):
    from poolbench.cli import main

    db, _run_id = tiny_run
    out = tmp_path / "cli.html"
    assert main(["report", "--db", db, "--last", "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    assert out.exists()
    for ext in (".md", ".csv"):  # the same run gives the same tables and answers
        with open(report[:-5] + ext, encoding="utf-8") as a, open(tmp_path / f"cli{ext}", encoding="utf-8") as b:
            assert a.read() == b.read()
    assert main(["report", "--db", db, "--run", "999"]) == 2
    assert "run 999 is not in" in capsys.readouterr().err
    with pytest.raises(ReportError, match="no results database"):
        write_report(str(tmp_path / "absent.db"))


def test_missing_and_partial_data_is_reported_not_fatal(tiny_run, tmp_path):
    db = str(tmp_path / "partial.db")
    shutil.copy(tiny_run[0], db)
    run_id = tiny_run[1]
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM measurements WHERE scenario = 'cpu' AND implementation = 'asyncio'")
        conn.execute(
            "UPDATE measurements SET ok = 0, error = 'RuntimeError: boom', throughput = NULL "
            "WHERE scenario = 'cpu' AND implementation = 'process' AND repeat = 1"
        )
        conn.execute("UPDATE measurements SET ok = 0, error = 'MemoryError' WHERE scenario = 'priority'")
        conn.execute("DELETE FROM controls")
    path = write_report(db, run_id, out=str(tmp_path / "partial.html"))
    _, text = parse(path)
    assert "not measured: this implementation has no measurement of this case" in text  # asyncio on cpu
    assert "1 of 2 repeats failed: RuntimeError: boom" in text
    assert "priority: every measurement failed (MemoryError)" in answer(text, "q-priority")
    assert "no control-workload timings" in text

    # a run that never finished and measured nothing
    conn = store.connect(db)
    empty = store.create_run(conn, runner.metadata(runner.RunOptions(scenarios=("cpu",), db=db)))
    conn.close()
    path = write_report(db, empty, out=str(tmp_path / "empty.html"))
    page, text = parse(path)
    assert page.sections == SHOWN
    assert "the run did not finish" in text and "no measurements at all in this run" in text
    assert "No scenario has any measurement in this run" in text
    assert answer(text, "q-cpu").startswith("Not answered")


def _write_locust(root, backend: str) -> None:
    d = root / f"20250101T000000Z-{backend}"
    d.mkdir(parents=True)
    head = (
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
        "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
        "99.99%,100%\n"
    )
    (d / "locust_stats.csv").write_text(
        head + "POST,POST /jobs,900,0,8,10,1,120,35,90,0,8,11,12,14,18,23,34,45,120,130,130\n"
        "POST,POST /jobs [503 back-pressure],100,0,2,3,1,20,30,10,0,2,2,3,3,4,5,6,8,20,20,20\n"
        ",Aggregated,1000,0,8,9,1,120,34,100,0,8,10,12,13,17,22,30,40,110,130,130\n"
    )
    hist = (
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,"
        "Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
        "Total Min Response Time,Total Max Response Time,Total Average Content Size\n"
    )
    hist += "1735689600,0,,Aggregated,0.000000,0.000000,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0.0,0,0,0\n"
    for t in range(1, 8):
        hist += f"{1735689600 + t},10,,Aggregated,{95 + t}.0,0.5,8,10,12,13,17,22,30,40,110,130,130,{t * 100},0,8,9.0,1,120,34\n"
    (d / "locust_stats_history.csv").write_text(hist)
    (d / "locust_failures.csv").write_text("Method,Name,Error,Occurrences,First Seen,Last Seen\n")
    (d / "summary.json").write_text(json.dumps({"config": {"shape": "overload", "users": 10, "duration_s": 8}}))


def test_locust_and_benchmark_data(tiny_run, tmp_path):
    db, run_id = tiny_run
    _write_locust(tmp_path / "loadtests", "thread")
    partial = tmp_path / "loadtests" / "20250101T000000Z-process"
    partial.mkdir()
    (partial / "locust_stats.csv").write_text("not,a\nlocust,file,at all\n")
    bench = {
        "datetime": "2025-01-01T00:00:00",
        "version": "5.1.0",
        "commit_info": {"id": "abc", "dirty": False},
        "benchmarks": [
            {
                "group": "noop",
                "name": n,
                "param": None,
                "extra_info": {"backend": b, "jobs": 500},
                "stats": {"median": m, "rounds": 5, "data": [m * (1 + i / 100) for i in range(5)]},
            }
            for n, b, m in (("test_noop[thread]", "thread", 0.006), ("test_tpe", "ThreadPoolExecutor", 0.004))
        ],
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    path = write_report(
        db,
        run_id,
        out=str(tmp_path / "ext.html"),
        loadtests_dir=str(tmp_path / "loadtests"),
        benchmarks_path=str(tmp_path / "bench.json"),
    )
    page, text = parse(path)
    for uri in page.images:
        decode_png(uri)
    assert "thread — 20250101T000000Z" in text and "100 of 1,000 (10.0%)" in text
    assert "The 503 rate over time is not recorded" in text
    assert "20250101T000000Z-process: no summary.json" in text  # the partial directory
    assert (
        "the thread pool&#x27;s jobs/s were lower than those of concurrent.futures.ThreadPoolExecutor (0.67×; "
        "not paired: no interval of the ratio; significant, Mann–Whitney p=0.008)"
    ) in answer(text, "q-overhead")
    assert (
        "noop: ThreadPoolExecutor had the highest median round; it was faster than thread (1.50×; not paired: "
        "no interval of the ratio; significant, Mann–Whitney p=0.008)"
    ) in text
    assert "were made at commit abc" in text  # not this run's commit


def test_compare_marks_significant_changes(tmp_path):
    """Known answers: 5 repeats each; thread doubled, process halved, asyncio the same."""
    db = str(tmp_path / "cmp.db")
    conn = store.connect(db)
    meta = runner.metadata(runner.RunOptions(scenarios=("cpu",), db=db))
    cpu = spec.builtin()["cpu"].model_dump(mode="json")
    runs = []
    for _i, (model, control, scale) in enumerate(
        (
            ("CPU A", 0.30, {"thread": 1, "process": 1, "asyncio": 1}),
            ("CPU B", 0.40, {"thread": 2, "process": 0.5, "asyncio": 1}),
        )
    ):
        run_id = store.create_run(conn, {**meta, "cpu_model": model})
        for rep in range(5):
            for b, s in scale.items():
                tp = 1000.0 * s * (1 + rep / 100)
                result = Result(jobs=100, completed=100, throughput=tp, lat_p99_ms=100.0 / s * (1 + rep / 50))
                store.add_measurement(
                    conn,
                    run_id,
                    scenario="cpu",
                    variant="",
                    implementation=b,
                    repeat=rep,
                    seq=rep,
                    result=result,
                    params=cpu,
                )
        store.add_control(conn, run_id, 0, control)
        store.finish_run(
            conn, run_id, finished_at="2025-01-01T00:00:00+00:00", control_median_s=control, control_drift=0.0, flags=[]
        )
        runs.append(run_id)
    conn.close()
    path = write_comparison(db, *runs, out=str(tmp_path / "cmp.html"))
    page, text = parse(path)
    assert page.sections == [sid for sid, _ in COMPARE_SECTIONS]
    rows = {
        m.group(1): m.group(0) for m in re.finditer(r'<tr(?: class="[^"]*")?><td>cpu</td><td>(\w+)</td>.*?</tr>', text)
    }
    assert 'class="improvement"' in rows["thread"] and ">improvement<" in rows["thread"] and "2.00×" in rows["thread"]
    assert 'class="regression"' in rows["process"] and ">regression<" in rows["process"]
    assert ">no significant difference<" in rows["asyncio"]
    assert "the runs differ in CPU: CPU A" in text
    assert "the control workload took 33% longer in run 2" in text
    assert "2.67×" in rows["thread"]  # normalized by the control: 2.00 × 0.40 / 0.30
    for uri in page.images:
        decode_png(uri)
    with open(path[:-5] + ".md", encoding="utf-8") as f:
        md = f.read()
    assert "🔴 regression" in md and "🟢 improvement" in md and "1 regression, 1 improvement" in md


def test_compare_a_run_with_itself_finds_nothing(tiny_run, tmp_path):
    db, run_id = tiny_run
    path = write_comparison(db, run_id, run_id, out=str(tmp_path / "same.html"))
    _, text = parse(path)
    assert 'class="regression"' not in text and 'class="improvement"' not in text
    assert "no significant difference" in text and "too few for the test to show a difference" in text


# ---------------------------------------------------------------- real headless Chromium

needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="Chromium is not installed (Debian: apt-get install -y chromium)"
)

CHECKS = {
    "broken_images": "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length",
    "images": "document.images.length",
    "sections": "Array.from(document.querySelectorAll('body > section')).map(s => s.id)",
    "sorted": """(() => {
        const t = document.querySelector('#scenario-cpu table.sortable');
        const th = t.tHead.rows[0].cells[2];
        const col = () => Array.from(t.tBodies[0].rows).map(r => r.cells[2].getAttribute('data-v'));
        th.click(); const up = col(); th.click(); const down = col();
        return {up: up, down: down, aria: th.getAttribute('aria-sort')};
    })()""",
}


def _non_blank(png: str) -> float:
    from PIL import Image

    with Image.open(png) as img:
        gray = img.convert("L")
        hist = gray.histogram()
    return 1 - hist[255] / sum(hist)  # share of pixels that are not pure white


@needs_chromium
def test_report_in_headless_chromium(report, tmp_path):
    shot = str(tmp_path / "page.png")
    result = check_page(report, shot, width=1280, height=2000, expressions=CHECKS)
    assert result.errors == [] and result.console == [], result.console
    r = result.results
    assert r["broken_images"] == 0 and r["images"] >= 15
    assert r["sections"] == SHOWN
    up = [float(v) for v in r["sorted"]["up"] if v]
    down = [float(v) for v in r["sorted"]["down"] if v]
    assert up == sorted(up) and down == sorted(down, reverse=True) and len(up) == 3
    assert r["sorted"]["aria"] == "descending"
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 2000)
    assert _non_blank(shot) > 0.03


@needs_chromium
def test_the_browser_check_sees_errors(tmp_path):
    """The check itself can fail: console errors, exceptions and broken images are seen."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p><img src='data:image/png;base64,AAAA'>"
        "<script>console.error('bad thing'); undefinedFunction();</script></body></html>"
    )
    result = check_page(
        str(bad), str(tmp_path / "bad.png"), width=400, height=300, expressions={"broken": CHECKS["broken_images"]}
    )
    assert any("bad thing" in e for e in result.errors)
    assert any("undefinedFunction" in e for e in result.errors)
    assert result.results["broken"] == 1
    with pytest.raises(BrowserError, match=r"not installed|No such file|did not answer|closed"):
        check_page(str(bad), str(tmp_path / "x.png"), executable="/nonexistent/chromium", timeout=10)
