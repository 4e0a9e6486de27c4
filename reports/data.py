"""Everything a report reads, loaded once with pandas: the run from SQLite (through
:mod:`scenarios.store` and :func:`scenarios.summary.summarize`), the locust CSVs
and ``summary.json`` of ``poolbench loadtest``, and the pytest-benchmark JSON.

Nothing here raises on missing or partial data except a database or run that does
not exist (:class:`ReportError`): what is absent is written down in
``RunData.missing`` and the report says so.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from scenarios import store
from scenarios.summary import Row, summarize

__all__ = ["LoadTest", "ReportError", "RunData", "case_key", "load_benchmarks", "load_loadtests", "load_run"]

NUMERIC = store.METRICS


class ReportError(Exception):
    """Raised when there is nothing to report on: no database, or no such run.
    Partial data never raises; the report lists what is missing."""


@dataclass
class LoadTest:
    """One ``poolbench loadtest`` directory: ``<UTC timestamp>-<backend>``."""

    path: str
    stamp: str
    backend: str
    stats: Any = None  # DataFrame of *_stats.csv
    history: Any = None  # DataFrame of *_stats_history.csv
    failures: Any = None  # DataFrame of *_failures.csv
    summary: dict | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class RunData:
    db: str
    run_id: int
    run: dict  # the runs row, flags decoded (from summarize)
    rows: list[Row]  # scenarios.summary rows
    df: Any  # every measurement of the run (DataFrame), numeric columns as floats
    controls: Any  # DataFrame
    loadtests: list[LoadTest]
    benchmarks: Any  # DataFrame of pytest-benchmark results, or None
    bench_meta: dict
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self):
        return self.df[self.df.ok == 1]

    def implementations(self) -> list[str]:
        listed = list(self.run.get("implementations") or [])
        seen = [b for b in self.df.implementation.unique().tolist() if b not in listed]
        return listed + seen

    def scenarios(self) -> list[str]:
        listed = list(self.run.get("scenarios") or [])
        seen = [s for s in self.df.scenario.unique().tolist() if s not in listed]
        return listed + seen

    def params(self, scenario: str, variant: str | None = None) -> dict:
        """The scenario as it was run (stored with each measurement), of one
        ``variant`` of its sweep or of the first that has them."""
        rows = self.df[self.df.scenario == scenario]
        if variant is not None:
            rows = rows[rows.variant == variant]
        for p in rows.params:
            if isinstance(p, dict):
                return p
        return {}


def case_key(scenario: str, variant: str) -> str:
    return f"{scenario}[{variant}]" if variant else scenario


def _json_list(value: Any) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            out = json.loads(value)
        except json.JSONDecodeError:
            return []
        return out if isinstance(out, list) else []
    return []


def _runs_in(db: str) -> list[int]:
    with sqlite3.connect(db) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY run_id")]
        except sqlite3.DatabaseError:
            return []


def resolve_run(db: str, run_id: int | None) -> int:
    """``run_id``, or the last run of ``db``; ReportError if there is none."""
    if not os.path.exists(db):
        raise ReportError(f"no results database at {db}: run `poolbench run` first, or pass --db")
    runs = _runs_in(db)
    if not runs:
        raise ReportError(f"{db} holds no runs: run `poolbench run` first")
    if run_id is None:
        return runs[-1]
    if run_id not in runs:
        raise ReportError(f"run {run_id} is not in {db}; its runs: {', '.join(map(str, runs))}")
    return run_id


def load_run(
    db: str,
    run_id: int | None = None,
    *,
    loadtests_dir: str | None = None,
    benchmarks_path: str | None = None,
) -> RunData:
    import pandas as pd

    run_id = resolve_run(db, run_id)
    results_dir = os.path.dirname(os.path.abspath(db))
    missing: list[str] = []
    warnings: list[str] = []
    try:
        run, rows = summarize(db, run_id)
    except Exception as e:  # noqa: BLE001 - a broken summary must not cost the rest of the report
        runs = store.load_runs(db)
        run = runs[runs.run_id == run_id].iloc[0].to_dict()
        run["flags"] = _json_list(run.get("flags"))
        rows = []
        warnings.append(f"the summary could not be computed ({type(e).__name__}: {e}); tables lack verdicts")
    # pandas gives NaN for a NULL next to non-NULL values (an unfinished run's finished_at)
    run = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in run.items()}
    for key in ("implementations", "scenarios"):
        run[key] = _json_list(run.get(key))
    run["packages"] = _decode_dict(run.get("packages"))
    df = store.load_measurements(db, run_id)
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["ok"] = pd.to_numeric(df["ok"], errors="coerce").fillna(0).astype(int)
    df["variant"] = df["variant"].fillna("").astype(str)
    df["params"] = df["params"].map(lambda v: v if isinstance(v, dict) else {})
    controls = store.load_controls(db, run_id)

    warnings = list(run.get("flags") or []) + warnings
    if not run.get("finished_at"):
        warnings.append("the run did not finish (interrupted, or still running): every table below is partial")
    if df.empty:
        missing.append("no measurements at all in this run")
    elif not (df.ok == 1).any():
        missing.append("every measurement of this run failed: there are no results, only errors")
    if controls.empty:
        missing.append("no control-workload timings: the machine's speed during the run is unknown")
    ran = set(df.scenario)
    for name in run["scenarios"]:
        if name not in ran:
            missing.append(f"scenario {name!r} was planned but has no measurement")

    lt_dir = loadtests_dir or os.path.join(results_dir, "loadtests")
    loadtests = load_loadtests(lt_dir)
    if not loadtests:
        missing.append(f"no load-test data (nothing in {lt_dir}; `poolbench loadtest` writes it)")
    for lt in loadtests:
        missing.extend(f"load test {os.path.basename(lt.path)}: {p}" for p in lt.problems)

    bench_path = benchmarks_path or os.path.join(results_dir, "benchmarks.json")
    bench, bench_meta, problem = load_benchmarks(bench_path)
    if problem:
        missing.append(problem)
    elif bench_meta.get("commit") and run.get("git_commit") and bench_meta["commit"] != run["git_commit"]:
        warnings.append(
            f"the micro-benchmarks ({bench_path}) were made at commit {bench_meta['commit'][:10]}, "
            f"this run at {run['git_commit'][:10]}"
        )
    return RunData(db, run_id, run, rows, df, controls, loadtests, bench, bench_meta, missing, warnings)


def _decode_dict(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            out = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return out if isinstance(out, dict) else {}
    return {}


# ---------------------------------------------------------------- locust


def _read_csv(path: str, problems: list[str]):
    import pandas as pd

    try:
        return pd.read_csv(path, na_values=["N/A"])
    except Exception as e:  # noqa: BLE001 - an unreadable file is reported, not fatal
        problems.append(f"{os.path.basename(path)} unreadable ({type(e).__name__}: {e})")
        return None


def load_loadtests(root: str) -> list[LoadTest]:
    """The latest load test of each backend under ``root`` (newest first by name:
    the directory names start with a UTC timestamp)."""
    if not os.path.isdir(root):
        return []
    latest: dict[str, LoadTest] = {}
    for path in sorted(glob.glob(os.path.join(root, "*"))):
        if not os.path.isdir(path):
            continue
        name = os.path.basename(path)
        stamp, _, backend = name.partition("-")
        backend = backend.rsplit("-", 1)[0] if backend.rsplit("-", 1)[-1].isdigit() else backend
        lt = LoadTest(path, stamp, backend or "?")
        stats = list(glob.glob(os.path.join(path, "*_stats.csv")))
        history = glob.glob(os.path.join(path, "*_stats_history.csv"))
        failures = glob.glob(os.path.join(path, "*_failures.csv"))
        summary = os.path.join(path, "summary.json")
        if not (stats or history or failures or os.path.exists(summary)):
            continue
        if stats:
            lt.stats = _read_csv(sorted(stats)[0], lt.problems)
        else:
            lt.problems.append("no *_stats.csv")
        if history:
            lt.history = _read_csv(sorted(history)[0], lt.problems)
        else:
            lt.problems.append("no *_stats_history.csv: nothing over time")
        if failures:
            lt.failures = _read_csv(sorted(failures)[0], lt.problems)
        if os.path.exists(summary):
            try:
                with open(summary) as f:
                    lt.summary = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                lt.problems.append(f"summary.json unreadable ({e})")
        else:
            lt.problems.append("no summary.json (the run may have been interrupted)")
        latest[lt.backend] = lt  # sorted by name: the last is the newest
    return sorted(latest.values(), key=lambda lt: lt.backend)


# ---------------------------------------------------------------- pytest-benchmark


def load_benchmarks(path: str):
    """(DataFrame, meta, problem): one row per benchmark, with its per-round
    throughput (jobs/s) when the JSON holds the rounds' data."""
    import pandas as pd

    if not os.path.exists(path):
        return None, {}, f"no micro-benchmarks ({path} is absent; `make bench` writes it)"
    try:
        with open(path) as f:
            raw = json.load(f)
        rows = []
        for b in raw.get("benchmarks", []):
            stats = b.get("stats") or {}
            extra = b.get("extra_info") or {}
            jobs = extra.get("jobs")
            data = [t for t in (stats.get("data") or []) if t and t > 0]
            median = stats.get("median")
            rows.append(
                {
                    "group": b.get("group") or "",
                    "name": b.get("name"),
                    "contender": extra.get("backend") or b.get("param") or b.get("name"),
                    "jobs": jobs,
                    "median_s": median,
                    "rounds": stats.get("rounds"),
                    "jobs_per_s": (jobs / median) if jobs and median else None,
                    "round_jobs_per_s": [jobs / t for t in data] if jobs else [],
                    # -benchmem (pool_benchmark's memory pass), when the JSON has it
                    "mem_bytes_per_job": extra.get("mem_bytes_per_job"),
                    "mem_allocs_per_job": extra.get("mem_allocs_per_job"),
                }
            )
    except (OSError, ValueError, TypeError, AttributeError) as e:
        return None, {}, f"micro-benchmarks unreadable ({path}: {type(e).__name__}: {e})"
    if not rows:
        return None, {}, f"no micro-benchmarks in {path}"
    commit = (raw.get("commit_info") or {}).get("id")
    meta = {
        "path": path,
        "datetime": raw.get("datetime"),
        "commit": commit,
        "dirty": (raw.get("commit_info") or {}).get("dirty"),
        "version": raw.get("version"),
    }
    return pd.DataFrame(rows), meta, None


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
