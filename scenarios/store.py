"""Results in SQLite: one table of runs, one of measurements (one row per repeat of
one case on one implementation, or one row for a cell that was skipped, with the
reason), one of control-workload timings. The measurements' metric columns are the
fields of :class:`scenarios.result.Result`: the schema follows the dataclass, and a
database made by an older version gains the columns it lacks when it is opened.
pandas reads the tables back with :func:`load_runs` / :func:`load_measurements`,
which decodes each row's findings into its experiment's dataclass."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from .result import COLUMNS, METRICS, Result

__all__ = [
    "DEFAULT_DB",
    "DRIFT_LIMIT",
    "METRICS",
    "add_control",
    "add_measurement",
    "add_profile",
    "connect",
    "create_run",
    "experiment_of",
    "finish_run",
    "last_run_id",
    "load_controls",
    "load_measurements",
    "load_profiles",
    "load_runs",
]

DEFAULT_DB = os.path.join("results", "poolbench.db")
DRIFT_LIMIT = 0.10  # runs.control_drift above this: the machine's speed moved during the run

TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    quick INTEGER NOT NULL,
    repeats INTEGER NOT NULL,
    implementations TEXT NOT NULL,   -- JSON list of their labels
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
    implementation TEXT NOT NULL,    -- its label: "thread", "ProcessPoolExecutor", "mypkg:make_executor"
    repeat INTEGER NOT NULL,
    seq INTEGER NOT NULL,            -- order in which the measurements ran
    ok INTEGER NOT NULL,
    error TEXT,                      -- why the measurement failed
    skipped TEXT,                    -- why the implementation could not run the case (never measured)
    findings TEXT,                   -- JSON: the experiment's own findings
    params TEXT                      -- JSON: the scenario as run
);
CREATE TABLE IF NOT EXISTS profiles (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    scenario TEXT NOT NULL,
    variant TEXT NOT NULL,
    implementation TEXT NOT NULL,
    samples INTEGER,                 -- py-spy samples in the profile
    stacks TEXT,                     -- collapsed stacks ("outer;...;inner count" lines): scenarios.profiling
    error TEXT                       -- why no profile was recorded
);
CREATE TABLE IF NOT EXISTS controls (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    position INTEGER NOT NULL,
    seconds REAL NOT NULL
);
"""
INDEX = "CREATE INDEX IF NOT EXISTS measurements_run ON measurements(run_id, scenario, variant, implementation)"
#: columns renamed since the first schema: table → {old: new}
RENAMED = {"runs": {"backends": "implementations"}, "measurements": {"backend": "implementation", "extra": "findings"}}


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database of an older version to this schema: renamed columns, and the
    Result fields it lacks (as NULL in its old rows)."""
    for table, renames in RENAMED.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for old, new in renames.items():
            if old in have and new not in have:
                conn.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
    have = {row[1] for row in conn.execute("PRAGMA table_info(measurements)")}
    for name, sql_type in COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE measurements ADD COLUMN {name} {sql_type}")
    conn.execute(INDEX)
    conn.commit()


def connect(path: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(TABLES)
    _migrate(conn)
    return conn


def create_run(conn: sqlite3.Connection, meta: dict[str, Any]) -> int:
    cur = conn.execute(
        "INSERT INTO runs (started_at, quick, repeats, implementations, scenarios, python, platform, cpu_count, "
        "cpu_model, loadavg_start, git_commit, packages) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            meta["started_at"],
            int(meta["quick"]),
            meta["repeats"],
            json.dumps(meta["implementations"]),
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
    implementation: str,
    repeat: int,
    seq: int,
    result: Result | None,
    params: dict[str, Any],
    error: str | None = None,
    skipped: str | None = None,
) -> None:
    """One row: a result, or the ``error`` of a failed measurement, or the reason a
    cell was ``skipped``."""
    data = result.to_json() if result is not None else {}
    values = [data.get(m) for m in METRICS]
    conn.execute(
        f"INSERT INTO measurements (run_id, scenario, variant, implementation, repeat, seq, ok, error, skipped, "
        f"findings, params, {', '.join(METRICS)}) VALUES ({', '.join('?' * (11 + len(METRICS)))})",
        (
            run_id,
            scenario,
            variant,
            implementation,
            repeat,
            seq,
            int(result is not None),
            error,
            skipped,
            json.dumps(data.get("findings")),
            json.dumps(params),
            *values,
        ),
    )
    conn.commit()


def add_profile(
    conn: sqlite3.Connection,
    run_id: int,
    *,
    scenario: str,
    variant: str,
    implementation: str,
    stacks: str | None,
    samples: int | None,
    error: str | None = None,
) -> None:
    """A profile of one case on one implementation (``poolbench run --profile``), or
    why it could not be recorded."""
    conn.execute(
        "INSERT INTO profiles (run_id, scenario, variant, implementation, samples, stacks, error) "
        "VALUES (?,?,?,?,?,?,?)",
        (run_id, scenario, variant, implementation, samples, stacks, error),
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


def _read(path: str, query: str, params: tuple = ()):
    import pandas as pd

    conn = connect(path)  # an older database gains this schema first
    try:
        return pd.read_sql_query(query, conn, params=params)
    finally:
        conn.close()


def load_runs(path: str):
    return _read(path, "SELECT * FROM runs ORDER BY run_id")


def experiment_of(params: dict[str, Any] | None) -> str:
    """The experiment of a stored scenario ("driver" in runs made before experiments had a registry)."""
    params = params or {}
    return params.get("experiment") or params.get("driver") or "load"


def _findings(row: Any) -> Any:
    from . import experiments

    data = json.loads(row.findings) if isinstance(row.findings, str) else None
    try:
        return experiments.decode_findings(experiment_of(row.params), data)
    except (KeyError, ValueError):  # an experiment gone, or findings it no longer reads
        return None


def load_measurements(path: str, run_id: int | None = None):
    """The measurements of one run (or all) as a pandas DataFrame; ``params`` decoded
    from JSON, ``findings`` into the dataclass of the experiment that made them."""
    if run_id is None:
        df = _read(path, "SELECT * FROM measurements ORDER BY id")
    else:
        df = _read(path, "SELECT * FROM measurements WHERE run_id = ? ORDER BY id", (run_id,))
    df["params"] = df["params"].map(lambda s: json.loads(s) if isinstance(s, str) else None)
    df["findings"] = [_findings(row) for row in df.itertuples()] if len(df) else []
    return df


def load_profiles(path: str, run_id: int):
    """The profiles of one run (an empty frame for a run without any)."""
    return _read(path, "SELECT * FROM profiles WHERE run_id = ?", (run_id,))


def load_controls(path: str, run_id: int):
    return _read(path, "SELECT * FROM controls WHERE run_id = ? ORDER BY position", (run_id,))
