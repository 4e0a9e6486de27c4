"""Memory per job (-benchmem): tracemalloc in a pass of its own, in pools.testing.bench,
the load experiment's Result, SQLite (an old database gains the columns) and the report."""

from __future__ import annotations

import concurrent.futures
import sqlite3

from pools.testing import bench
from scenarios import implementations, spec, store
from scenarios.experiments.load import run as run_load
from scenarios.result import Result
from scenarios.spec import Case


def kilobyte(i: int) -> bytes:
    return bytes(1000 + i % 2)  # a fresh kilobyte per job, held by its future as the result


def test_memory_per_job_sees_what_each_job_allocates_and_holds():
    args = [(i,) for i in range(100)]
    prepared = bench.prepare(bench.Implementation("thread"), kilobyte, args, 2)
    try:
        mem = bench.memory_per_job(prepared.submit, len(args))
    finally:
        prepared.close()
    assert mem.jobs == 100
    assert mem.allocations >= 1 and mem.bytes > 0, mem
    # every result (1 kB) is alive at the end of the round: the peak holds them all
    assert mem.peak_bytes > 1000, mem
    info = mem.as_extra_info()
    assert set(info) == {"mem_bytes_per_job", "mem_allocs_per_job", "mem_peak_bytes_per_job"}


def test_the_load_experiment_records_memory_per_job_into_sqlite_and_back(tmp_path):
    sc = spec.parse({"name": "mem", "workload": [{"type": "noop"}], "jobs": 200, "workers": 2}, "test")
    result = run_load(Case(scenario=sc), implementations.resolve("thread"), 0)
    assert result.mem_bytes_per_job > 0 and result.mem_allocs_per_job >= 1, result
    assert result.mem_peak_bytes_per_job > 0
    off = run_load(Case(scenario=sc.changed(benchmem=False)), implementations.resolve("thread"), 0)
    assert off.mem_bytes_per_job is None

    db = str(tmp_path / "r.db")
    conn = store.connect(db)
    run_id = store.create_run(
        conn,
        {
            "started_at": "2026-01-01T00:00:00",
            "quick": False,
            "repeats": 1,
            "implementations": ["thread"],
            "scenarios": ["mem"],
            "python": "3",
            "platform": "linux",
            "cpu_count": 2,
            "cpu_model": "x",
            "loadavg_start": 0.0,
            "git_commit": None,
            "packages": {},
        },
    )
    store.add_measurement(
        conn, run_id, scenario="mem", variant="", implementation="thread", repeat=0, seq=0, result=result, params={}
    )
    conn.close()
    df = store.load_measurements(db, run_id)
    row = df.iloc[0]
    assert row.mem_bytes_per_job == result.mem_bytes_per_job
    assert row.mem_allocs_per_job == result.mem_allocs_per_job
    assert row.mem_peak_bytes_per_job == result.mem_peak_bytes_per_job


def test_a_database_of_an_older_version_gains_the_memory_columns(tmp_path):
    db = str(tmp_path / "old.db")
    old = sqlite3.connect(db)
    # the tables without any metric column (an old version's), one row
    old.executescript(store.TABLES)
    old.execute(
        "INSERT INTO runs (started_at, quick, repeats, implementations, scenarios) VALUES ('t', 0, 1, '[]', '[]')"
    )
    old.execute(
        "INSERT INTO measurements (run_id, scenario, variant, implementation, repeat, seq, ok, params) "
        "VALUES (1, 'noop', '', 'thread', 0, 0, 1, '{}')"
    )
    old.commit()
    assert "mem_bytes_per_job" not in {r[1] for r in old.execute("PRAGMA table_info(measurements)")}
    old.close()
    store.connect(db).close()  # opening migrates
    df = store.load_measurements(db)
    assert {"mem_bytes_per_job", "mem_allocs_per_job", "mem_peak_bytes_per_job"} <= set(df.columns)
    value = df.iloc[0].mem_bytes_per_job
    assert value is None or value != value  # NULL (None or NaN, as pandas reads it)


def test_the_report_table_shows_memory_per_job():
    from reports.tables import COLUMNS, cell_text

    names = [c for c, _, _ in COLUMNS]
    assert "mem_bytes" in names and "mem_allocs" in names
    assert cell_text({"mem_bytes": 612.0}, "mem_bytes") == "612"
    assert cell_text({"mem_allocs": 7.125}, "mem_allocs") == "7.1"
    assert cell_text({"mem_allocs": None}, "mem_allocs") == "—"
    assert Result(jobs=1).mem_bytes_per_job is None


def test_the_memory_experiment_cancels_the_jobs_it_measured_and_counts_them():
    # Measured, the jobs waiting behind the held worker are cancelled, not run.
    from scenarios.experiments.memory import run as run_memory

    sc = spec.builtin("contenders")["contenders.memory"].changed(jobs=200, quick={})
    for name in ("thread", "ThreadPoolExecutor"):
        r = run_memory(Case(scenario=sc), implementations.resolve(name), 0)
        assert (r.jobs, r.cancelled, r.completed, r.failed) == (200, 200, 0, 0), (name, r)


def test_each_job_the_memory_experiment_leaves_counts_once_by_its_outcome():
    # A TaskGroup session's futures cannot be cancelled and its close drops the jobs
    # still queued: never done, they count as cancelled (they had counted as completed).
    from scenarios.experiments.memory import outcomes

    ok, failed, timed_out, cancelled = (concurrent.futures.Future() for _ in range(4))
    ok.set_result(1)
    failed.set_exception(ValueError("no"))
    timed_out.set_exception(TimeoutError())
    cancelled.cancel()
    dropped = implementations._pending()  # set running, never set
    assert outcomes([ok, failed, timed_out, cancelled, dropped]) == {
        "succeeded": 1,
        "failed": 1,
        "timed_out": 1,
        "cancelled": 2,
    }
