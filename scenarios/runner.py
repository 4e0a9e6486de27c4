"""The runner: every backend through every scenario, repeated, interleaved, each
measurement in a fresh process, into SQLite.

Order of work::

    control ─▶ repeat 1: case A (backends in order b1 b2 b3), case B (...), ...
            ─▶ control ─▶ repeat 2: the same cases, backends rotated (b2 b3 b1) ─▶ ...
            ─▶ control ─▶ summary (and the HTML report when reports/ is installed)

Interleaving repeats, not running a backend's repeats back to back, makes a
drifting machine hit every backend alike; the control workload between repeats
makes the drift visible (``runs.control_drift``) instead of hiding it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pools

from . import store
from .spec import QUICK_DEFAULT, SCENARIOS, cases

MEASURE_TIMEOUT = 300  # seconds for one measurement


def default_backends() -> tuple[str, ...]:
    """The backends of this machine; a cluster backend (dask) only when named: each of
    its jobs is a scheduler round trip, which would make a quick run last far longer."""
    return tuple(b for b in pools.available_backends() if b != "dask")


@dataclass
class RunOptions:
    backends: tuple[str, ...] = field(default_factory=default_backends)
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    quick: bool = False
    repeats: int = 5
    db: str = store.DEFAULT_DB
    seed: int = 0


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _packages() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in (
        "poolbench",
        "dask",
        "distributed",
        "fastapi",
        "uvicorn",
        "locust",
        "pandas",
        "scipy",
        "matplotlib",
        "pytest-benchmark",
        "psutil",
        "rich",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def metadata(opts: RunOptions) -> dict[str, Any]:
    return {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": opts.quick,
        "repeats": opts.repeats,
        "backends": list(opts.backends),
        "scenarios": list(opts.scenarios),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "loadavg_start": os.getloadavg()[0],
        "git_commit": _git_commit(),
        "packages": _packages(),
    }


def measure_in_subprocess(request: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Run one measurement in a fresh interpreter; (result, None) or (None, error)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    # Its own session: on a timeout the whole group goes (its fork server and workers
    # too), so that no orphan keeps a core busy during the measurements after it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenarios.measure"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(json.dumps(request), timeout=MEASURE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timed out after {MEASURE_TIMEOUT}s"
    if proc.returncode != 0:
        return None, (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:500]
    try:
        return json.loads(out.strip().splitlines()[-1]), None
    except (json.JSONDecodeError, IndexError):
        return None, f"unreadable output: {out[-300:]!r}"


def plan(opts: RunOptions) -> list[tuple[Any, list[str]]]:
    """Each case of one repeat, with the backends it runs on (before rotation)."""
    out = []
    for name in opts.scenarios:
        for case in cases(name, quick=opts.quick):
            backends = [b for b in opts.backends if case.scenario.backends is None or b in case.scenario.backends]
            if backends:
                out.append((case, backends))
    return out


def count_steps(opts: RunOptions) -> int:
    """Measurements plus control runs: the length of the progress bar."""
    return sum(len(b) for _, b in plan(opts)) * opts.repeats + opts.repeats + 1


def run(opts: RunOptions, *, progress: Callable[[str], None] | None = None) -> int:
    """Run the matrix; return the run id in ``opts.db``."""
    unknown = [s for s in opts.scenarios if s not in SCENARIOS]
    if unknown:
        raise pools.InvalidArgument(f"unknown scenario {unknown[0]!r}; valid: {', '.join(SCENARIOS)}")
    missing = [b for b in opts.backends if b not in pools.available_backends()]
    if missing:
        raise pools.InvalidArgument(
            f"backend {missing[0]!r} is not available here; available: {', '.join(pools.available_backends())}"
        )
    if opts.repeats < 1:
        raise pools.InvalidArgument(f"repeats must be >= 1, got {opts.repeats}")
    conn = store.connect(opts.db)
    meta = metadata(opts)
    run_id = store.create_run(conn, meta)
    work = plan(opts)
    done = 0
    tick = progress or (lambda _msg: None)
    controls: list[float] = []
    control_errors: list[str] = []
    seq = 0

    def control(position: int) -> None:
        nonlocal done
        result, err = measure_in_subprocess({"control": True})
        if result is not None:
            controls.append(result["control_s"])
            store.add_control(conn, run_id, position, result["control_s"])
        else:
            control_errors.append(f"control workload {position} failed: {err}")
        done += 1
        tick(f"control workload {position}")

    control(0)
    for rep in range(opts.repeats):
        shift = rep % max(1, len(opts.backends))
        order = list(opts.backends[shift:]) + list(opts.backends[:shift])
        for case, backends in work:
            for backend in order:
                if backend not in backends:
                    continue
                request = {"case": case.to_json(), "backend": backend, "seed": opts.seed + rep}
                result, err = measure_in_subprocess(request)
                store.add_measurement(
                    conn,
                    run_id,
                    scenario=case.scenario.name,
                    variant=case.variant,
                    backend=backend,
                    repeat=rep,
                    seq=seq,
                    result=result,
                    error=err,
                    params=asdict(case.scenario),
                )
                seq += 1
                done += 1
                tick(f"{case.key} on {backend} (repeat {rep + 1}/{opts.repeats})")
        control(rep + 1)

    flags = list(control_errors)
    load_end = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if meta["loadavg_start"] > 0.5 * cpus:
        flags.append(f"the machine was loaded at the start (load average {meta['loadavg_start']:.2f} on {cpus} CPUs)")
    median = drift = None
    if controls:
        ordered = sorted(controls)
        median = ordered[len(ordered) // 2]
        drift = (ordered[-1] - ordered[0]) / median
        if drift > store.DRIFT_LIMIT:
            flags.append(
                f"the control workload drifted by {drift:.0%} during the run (limit {store.DRIFT_LIMIT:.0%}): "
                "the machine's speed changed; compare backends within this run, and runs only after normalizing"
            )
    failures = conn.execute("SELECT count(*) FROM measurements WHERE run_id = ? AND ok = 0", (run_id,)).fetchone()[0]
    if failures:
        flags.append(f"{failures} measurement(s) failed (see measurements.error)")
    bound = conn.execute(
        "SELECT count(*) FROM measurements WHERE run_id = ? AND generator_bound = 1", (run_id,)
    ).fetchone()[0]
    if bound:
        flags.append(f"in {bound} measurement(s) the load generator, not the pool, was the bottleneck")
    store.finish_run(
        conn,
        run_id,
        finished_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        loadavg_end=load_end,
        control_median_s=median,
        control_drift=drift,
        flags=flags,
    )
    conn.close()
    return run_id


def default_scenarios(quick: bool) -> tuple[str, ...]:
    return QUICK_DEFAULT if quick else tuple(SCENARIOS)
