"""The runner: every scenario on every implementation, repeated, interleaved, each
measurement in a fresh process, into SQLite.

Order of work::

    check everything (scenarios, workloads and their arguments, implementations) ─▶ the run's row
      ─▶ control ─▶ repeat 1: case A (implementations in order i1 i2 i3), case B (...), ...
      ─▶ control ─▶ repeat 2: the same cases, implementations rotated (i2 i3 i1) ─▶ ...
      ─▶ control ─▶ the run's row finished

Everything the user named is checked before the database is touched: a mistake (a
bad import path, a missing attribute, an argument source that raises, an unknown
implementation) is an error naming it, and nothing is written. A cell that an
implementation cannot run (a lambda on a process pool, a plain function on asyncio,
a priority mix on ThreadPoolExecutor) is stored once as skipped, with the reason, and
the run goes on.

Interleaving repeats, not running an implementation's repeats back to back, makes a
drifting machine hit every implementation alike; the control workload between
repeats makes the drift visible (``runs.control_drift``) instead of hiding it. Each
measurement runs in its own session, so that a timed-out one takes its whole process
group with it (fork server, worker processes, a contender's children).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pools

from . import experiments, store
from .implementations import Implementation, ImplementationError, default_for_user_code, default_ours, resolve
from .measure import RUNNER_PID
from .result import Result
from .spec import Case, ImplSpec, Scenario, ScenarioError, cases
from .spec import resolve as resolve_scenario
from .workload import Workload, resolve_mix

__all__ = [
    "MEASURE_TIMEOUT",
    "Cell",
    "RunOptions",
    "count_steps",
    "measure_in_subprocess",
    "metadata",
    "plan",
    "profile_pass",
    "profiled",
    "run",
]

MEASURE_TIMEOUT = 300  # seconds for one measurement
CALIBRATION_S = 0.5  # at most this long timing the user's functions before a run at `load`


@dataclass
class RunOptions:
    #: built-in scenario names, scenario file paths, or Scenario objects
    scenarios: Sequence[str | Scenario] = ()
    #: names, import paths of Executor factories, or ImplSpec; None: each scenario's own,
    #: or the default (ours; with the contenders for the user's functions)
    implementations: Sequence[str | ImplSpec] | None = None
    quick: bool = False
    repeats: int = 5
    db: str = store.DEFAULT_DB
    seed: int = 0
    #: profile (py-spy) each case on each implementation once, in a pass of its own after
    #: the timed repeats: True for every scenario, or the names of some; a scenario's
    #: own ``profile = true`` adds it
    profile: bool | Sequence[str] = False


@dataclass(frozen=True)
class Cell:
    """One case on one implementation: measured every repeat, or skipped with the reason."""

    case: Case
    impl: Implementation
    spec: ImplSpec
    skipped: str | None = None


@dataclass
class Plan:
    scenarios: list[Scenario]
    cells: list[Cell]
    implementations: list[str] = field(default_factory=list)  # labels, in run order


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
    from importlib import metadata as md

    out = {}
    for name in (
        "poolbench",
        "dask",
        "distributed",
        "mpire",
        "fastapi",
        "uvicorn",
        "locust",
        "pandas",
        "scipy",
        "matplotlib",
        "pytest-benchmark",
        "psutil",
        "pydantic",
        "rich",
    ):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def metadata(opts: RunOptions, work: Plan | None = None) -> dict[str, Any]:
    return {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": opts.quick,
        "repeats": opts.repeats,
        "implementations": list(work.implementations) if work else [],
        "scenarios": [sc.name for sc in work.scenarios] if work else [],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "loadavg_start": os.getloadavg()[0],
        "git_commit": _git_commit(),
        "packages": _packages(),
    }


def measure_in_subprocess(request: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Run one measurement in a fresh interpreter; (its JSON, None) or (None, error)."""
    env = dict(os.environ, PYTHONHASHSEED="0", **{RUNNER_PID: str(os.getpid())})
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


# ---------------------------------------------------------------- the plan


def _calibrate(sc: Scenario, mix: list[Workload]) -> Scenario:
    """``sc`` with ``job_ms``: the mean duration of its jobs, timed here on a few calls
    of each function, so that ``load`` (a multiple of capacity) is a rate."""
    means = []
    for work in mix:
        # `is None`, not truth: a callable object may be false (one with an empty __len__)
        sync, coro = work.sync, work.coro
        took, calls = 0.0, 0
        for args in work.args:
            start = time.perf_counter()
            try:
                if sync is not None:
                    sync(*args)
                elif coro is not None:
                    asyncio.run(coro(*args))
            except Exception as e:  # the user's function, timed before the run: its failure stops it here
                raise ScenarioError(
                    f"scenario {sc.name!r}: load is a multiple of capacity, which needs the jobs' mean duration, "
                    f"and {work.origin} raised {type(e).__name__}: {e} when timed; give rate (jobs/s) instead"
                ) from e
            took += time.perf_counter() - start
            calls += 1
            if took > CALIBRATION_S / len(mix) or calls >= 20:
                break
        means.append(took / calls * 1000)
    total = sum(w.weight for w in sc.workloads)
    job_ms = sum(w.weight * ms for w, ms in zip(sc.workloads, means, strict=True)) / total
    return sc.changed(job_ms=max(job_ms, 1e-6))


def _key(spec: ImplSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


def _defaults(sc: Scenario) -> tuple[str, ...]:
    return default_for_user_code() if sc.user_code() else default_ours()


def plan(opts: RunOptions) -> Plan:
    """Resolve everything the run names, in this process, before anything is stored;
    ScenarioError, ImplementationError or WorkloadError (all LoadError) naming the
    mistake."""
    if opts.repeats < 1:
        raise pools.InvalidArgument(f"repeats must be >= 1, got {opts.repeats}")
    scenarios = [sc if isinstance(sc, Scenario) else resolve_scenario(sc) for sc in opts.scenarios]
    if not scenarios:
        raise ScenarioError("no scenario to run: name a built-in scenario, a scenario file, or --workload")
    seen: set[str] = set()
    for sc in scenarios:
        if sc.name in seen:
            raise ScenarioError(f"scenario {sc.name!r} is named twice in this run")
        seen.add(sc.name)
    if not isinstance(opts.profile, bool):
        unknown = [n for n in opts.profile if n not in seen]
        if unknown:
            raise ScenarioError(
                f"--profile names scenario {unknown[0]!r}, which this run does not have; it has: {', '.join(sorted(seen))}"
            )
    resolved: dict[str, Implementation] = {}
    labels: list[str] = []
    cells: list[Cell] = []
    final: list[Scenario] = []
    for sc in scenarios:
        named = opts.implementations if opts.implementations is not None else (sc.implementations or _defaults(sc))
        specs = [ImplSpec(name=s) if isinstance(s, str) else s for s in named]
        shown = [s.shown for s in specs]
        twice = {x for x in shown if shown.count(x) > 1}
        if twice:
            raise ImplementationError(f"implementation {sorted(twice)[0]!r} is named twice: give it a label")
        for s in specs:
            if _key(s) not in resolved:
                resolved[_key(s)] = resolve(s)
            if s.shown not in labels:
                labels.append(s.shown)
        mix = resolve_mix(sc.workloads, limit=sc.jobs, seed=opts.seed)
        if sc.needs_duration():
            sc = _calibrate(sc, mix)
        # stored with every measurement: the report knows what was planned, and so what is missing
        sc = sc.changed(implementations=[s.model_dump() for s in specs])
        final.append(sc)
        experiment = experiments.get(sc.experiment)
        for case in cases(sc, quick=opts.quick):
            for s in specs:
                impl = resolved[_key(s)]
                reason = impl.unavailable() or experiment.applies(impl) or impl.lacks(case.scenario)
                for work in mix:
                    reason = reason or work.unfit(impl.runs, pickles=impl.pickles, implementation=impl.label)
                cells.append(Cell(case, impl, s, reason))
    return Plan(final, cells, labels)


def profiled(opts: RunOptions, work: Plan) -> list[Cell]:
    """The cells that the profile pass records (see ``RunOptions.profile``)."""
    names = set() if isinstance(opts.profile, bool) else set(opts.profile)
    return [
        c
        for c in work.cells
        if c.skipped is None and (opts.profile is True or c.case.scenario.name in names or c.case.scenario.profile)
    ]


def count_steps(work: Plan, repeats: int, opts: RunOptions | None = None) -> int:
    """Measurements, control runs and profiles: the length of the progress bar."""
    extra = len(profiled(opts, work)) if opts is not None else 0
    return sum(c.skipped is None for c in work.cells) * repeats + repeats + 1 + extra


PROFILE_SECONDS = 2.0  # a profile pass runs enough jobs for about this long (py-spy samples at 200/s)
PROFILE_SCALE = 50  # ... but at most this many times the case's jobs


def profile_pass(
    opts: RunOptions,
    cells: list[Cell],
    add: Callable[..., None],
    tick: Callable[[str], None],
    walls: dict[tuple[str, str], list[float]] | None = None,
) -> None:
    """One more measurement of each cell, under py-spy (worker processes included),
    after the timed repeats so that sampling disturbs none of them; the profile is
    kept (``store.add_profile``), the measurement's figures are not. A case whose
    repeats took less than ``PROFILE_SECONDS`` (``walls``: their wall times) runs
    with more jobs, so that the profile has samples enough."""
    import math
    import tempfile

    from .profiling import parse_collapsed

    walls = walls or {}
    with tempfile.TemporaryDirectory(prefix="poolbench-profiles-") as tmp:
        for i, cell in enumerate(cells):
            path = os.path.join(tmp, f"{i}.txt")
            case = cell.case
            took = sorted(walls.get((case.key, cell.spec.shown), []))
            if took and case.scenario.experiment == "load":
                scale = min(PROFILE_SCALE, math.ceil(PROFILE_SECONDS / max(1e-3, took[len(took) // 2])))
                if scale > 1:
                    case = Case(scenario=case.scenario.changed(jobs=case.scenario.jobs * scale), variant=case.variant)
            request = {
                "case": case.to_json(),
                "implementation": cell.spec.model_dump(mode="json"),
                "seed": opts.seed,
                "profile": path,
            }
            _, err = measure_in_subprocess(request)
            stacks = samples = None
            if err is None:
                with open(path) as f:
                    stacks = f.read()
                samples = sum(parse_collapsed(stacks).values())
            add(
                scenario=cell.case.scenario.name,
                variant=cell.case.variant,
                implementation=cell.spec.shown,
                stacks=stacks,
                samples=samples,
                error=err,
            )
            tick(f"profile of {cell.case.key} on {cell.spec.shown}")


# ---------------------------------------------------------------- the run


def run(opts: RunOptions, *, progress: Callable[[str], None] | None = None, work: Plan | None = None) -> int:
    """Run the plan of ``opts`` (made by :func:`plan` unless given); return the run id in ``opts.db``."""
    work = work or plan(opts)
    conn = store.connect(opts.db)
    meta = metadata(opts, work)
    run_id = store.create_run(conn, meta)
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

    def store_cell(cell: Cell, rep: int, result: Result | None, error: str | None, skipped: str | None) -> None:
        nonlocal seq
        store.add_measurement(
            conn,
            run_id,
            scenario=cell.case.scenario.name,
            variant=cell.case.variant,
            implementation=cell.spec.shown,
            repeat=rep,
            seq=seq,
            result=result,
            error=error,
            skipped=skipped,
            params=cell.case.scenario.model_dump(mode="json"),
        )
        seq += 1

    for cell in work.cells:
        if cell.skipped is not None:
            store_cell(cell, 0, None, None, cell.skipped)
    runnable = [c for c in work.cells if c.skipped is None]
    control(0)
    walls: dict[tuple[str, str], list[float]] = {}  # the profile pass sizes its cases by them
    order = work.implementations
    for rep in range(opts.repeats):
        shift = rep % max(1, len(order))
        rank = {label: i for i, label in enumerate(order[shift:] + order[:shift])}
        by_case: dict[str, list[Cell]] = {}
        for cell in runnable:
            by_case.setdefault(cell.case.key, []).append(cell)
        for group in by_case.values():
            for cell in sorted(group, key=lambda c: rank[c.spec.shown]):
                request = {
                    "case": cell.case.to_json(),
                    "implementation": cell.spec.model_dump(mode="json"),
                    "seed": opts.seed + rep,
                }
                raw, err = measure_in_subprocess(request)
                result = None
                if raw is not None:
                    try:
                        result = Result.from_json(raw)
                    except (TypeError, ValueError) as e:
                        err = f"unreadable result: {e}"
                store_cell(cell, rep, result, err, None)
                if result is not None and result.wall_s is not None:
                    walls.setdefault((cell.case.key, cell.spec.shown), []).append(result.wall_s)
                done += 1
                tick(f"{cell.case.key} on {cell.spec.shown} (repeat {rep + 1}/{opts.repeats})")
        control(rep + 1)

    to_profile = profiled(opts, work)
    if to_profile:

        def add_profile(**fields: Any) -> None:
            nonlocal done
            store.add_profile(conn, run_id, **fields)
            done += 1

        profile_pass(opts, to_profile, add_profile, tick, walls)

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
                "the machine's speed changed; compare implementations within this run, and runs only after normalizing"
            )
    failures = conn.execute(
        "SELECT count(*) FROM measurements WHERE run_id = ? AND ok = 0 AND skipped IS NULL", (run_id,)
    ).fetchone()[0]
    if failures:
        flags.append(f"{failures} measurement(s) failed (see measurements.error)")
    bound = conn.execute(
        "SELECT count(*) FROM measurements WHERE run_id = ? AND generator_bound = 1", (run_id,)
    ).fetchone()[0]
    if bound:
        flags.append(f"in {bound} measurement(s) the load generator, not the implementation, was the bottleneck")
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
