"""Results in SQLite: one table of runs, one of measurements (one row per repeat
of one case on one backend), one of control-workload timings. pandas reads them
back with :func:`load_runs` / :func:`load_measurements`."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

DEFAULT_DB = os.path.join("results", "poolbench.db")
DRIFT_LIMIT = 0.10  # runs.control_drift above this: the machine's speed moved during the run

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    quick INTEGER NOT NULL,
    repeats INTEGER NOT NULL,
    backends TEXT NOT NULL,          -- JSON list
    scenarios TEXT NOT NULL,         -- JSON list
    python TEXT, platform TEXT, cpu_count INTEGER, cpu_model TEXT,
    loadavg_start REAL, loadavg_end REAL,
    git_commit TEXT,
    packages TEXT,                   -- JSON {name: version}
    control_median_s REAL,           -- the control workload: speed of the machine during the run
    control_drift REAL,              -- (max - min) / median of the control timings
    flags TEXT                       -- JSON list of warnings (loaded machine, drift, ...)
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    scenario TEXT NOT NULL,
    variant TEXT NOT NULL,           -- "" or the sweep value, e.g. "queue_size=4"
    backend TEXT NOT NULL,
    repeat INTEGER NOT NULL,
    seq INTEGER NOT NULL,            -- order in which the measurements ran
    ok INTEGER NOT NULL,
    error TEXT,
    jobs INTEGER, completed INTEGER, failed INTEGER, timed_out INTEGER, cancelled INTEGER,
    rejected INTEGER, retried INTEGER,
    wall_s REAL, throughput REAL,
    lat_p50_ms REAL, lat_p95_ms REAL, lat_p99_ms REAL, lat_max_ms REAL,
    queue_wait_ms REAL, dispatch_ms REAL, run_ms REAL, return_ms REAL,
    cpu_s REAL,                      -- CPU seconds of the measuring process, its workers and reaped children
    peak_rss_mb REAL,                -- peak RSS of the measuring process + its workers' RSS at the end
    offered_rate REAL, achieved_rate REAL, generator_cpu REAL, generator_bound INTEGER,
    extra TEXT,                      -- JSON: the scenario's own findings
    params TEXT                      -- JSON: the scenario as run
);
CREATE TABLE IF NOT EXISTS controls (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    position INTEGER NOT NULL,
    seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_run ON measurements(run_id, scenario, variant, backend);
"""

METRICS = (
    "jobs",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
    "rejected",
    "retried",
    "wall_s",
    "throughput",
    "lat_p50_ms",
    "lat_p95_ms",
    "lat_p99_ms",
    "lat_max_ms",
    "queue_wait_ms",
    "dispatch_ms",
    "run_ms",
    "return_ms",
    "cpu_s",
    "peak_rss_mb",
    "offered_rate",
    "achieved_rate",
    "generator_cpu",
    "generator_bound",
)


def connect(path: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    return conn


def create_run(conn: sqlite3.Connection, meta: dict[str, Any]) -> int:
    cur = conn.execute(
        "INSERT INTO runs (started_at, quick, repeats, backends, scenarios, python, platform, cpu_count, "
        "cpu_model, loadavg_start, git_commit, packages) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            meta["started_at"],
            int(meta["quick"]),
            meta["repeats"],
            json.dumps(meta["backends"]),
            json.dumps(meta["scenarios"]),
            meta["python"],
            meta["platform"],
            meta["cpu_count"],
            meta["cpu_model"],
            meta["loadavg_start"],
            meta["git_commit"],
            json.dumps(meta["packages"]),
        ),
    )
    conn.commit()
    assert cur.lastrowid is not None  # set by the INSERT above
    return cur.lastrowid


def add_measurement(
    conn: sqlite3.Connection,
    run_id: int,
    *,
    scenario: str,
    variant: str,
    backend: str,
    repeat: int,
    seq: int,
    result: dict[str, Any] | None,
    error: str | None,
    params: dict[str, Any],
) -> None:
    values = [None] * len(METRICS) if result is None else [result.get(m) for m in METRICS]
    conn.execute(
        f"INSERT INTO measurements (run_id, scenario, variant, backend, repeat, seq, ok, error, "
        f"{', '.join(METRICS)}, extra, params) VALUES ({', '.join('?' * (10 + len(METRICS)))})",
        (
            run_id,
            scenario,
            variant,
            backend,
            repeat,
            seq,
            int(result is not None),
            error,
            *values,
            json.dumps(None if result is None else result.get("extra")),
            json.dumps(params),
        ),
    )
    conn.commit()


def add_control(conn: sqlite3.Connection, run_id: int, position: int, seconds: float) -> None:
    conn.execute("INSERT INTO controls (run_id, position, seconds) VALUES (?,?,?)", (run_id, position, seconds))
    conn.commit()


def finish_run(conn: sqlite3.Connection, run_id: int, **fields: Any) -> None:
    fields = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in fields.items()}
    sets = ", ".join(f"{k} = ?" for k in fields)
    conn.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", (*fields.values(), run_id))
    conn.commit()


def last_run_id(path: str) -> int | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT max(run_id) FROM runs").fetchone()
    return row[0] if row else None


def load_runs(path: str):
    import pandas as pd

    with sqlite3.connect(path) as conn:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", conn)


def load_measurements(path: str, run_id: int | None = None):
    """The measurements of one run (or all) as a pandas DataFrame; ``extra`` and
    ``params`` are decoded from JSON."""
    import pandas as pd

    with sqlite3.connect(path) as conn:
        if run_id is None:
            df = pd.read_sql_query("SELECT * FROM measurements ORDER BY id", conn)
        else:
            df = pd.read_sql_query("SELECT * FROM measurements WHERE run_id = ? ORDER BY id", conn, params=(run_id,))
    for col in ("extra", "params"):
        df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else None)
    return df


def load_controls(path: str, run_id: int):
    import pandas as pd

    with sqlite3.connect(path) as conn:
        return pd.read_sql_query("SELECT * FROM controls WHERE run_id = ? ORDER BY position", conn, params=(run_id,))
