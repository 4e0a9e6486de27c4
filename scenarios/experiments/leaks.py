"""What the leak checker catches when a pool or a job is left running."""

from __future__ import annotations

from dataclasses import dataclass, field

import pools
from pools.testing import find_leaks, snapshot
from pools.testing import jobs as tjobs

from ..implementations import Implementation
from ..result import Result
from ..spec import Case
from . import Experiment, ours_only

__all__ = ["EXPERIMENT", "LeakFindings"]


@dataclass(frozen=True)
class LeakFindings:
    #: situation → how many leftovers the checker reported
    caught: dict[str, int] = field(default_factory=dict)
    #: situation → what it reported
    details: dict[str, list[str]] = field(default_factory=dict)
    #: the threads the pool itself said it left running (the truth the checker is held to)
    abandoned_threads_reported: int | None = None


def _stubborn(gate: tjobs.Gate) -> None:
    gate.wait()  # ignores its context: only the gate ends it


async def _astubborn(gate: tjobs.Gate) -> None:
    await gate.wait_async()


def run(case: Case, impl: Implementation, seed: int) -> Result:
    """Two mistakes, each shown to the leak checker: a pool never shut down, and a
    job that ignores its context and outlives its timeout."""
    backend = impl.name
    caught: dict[str, list[str]] = {}
    before = snapshot()
    pool = pools.create_pool(backend, workers=case.scenario.workers)
    pool.submit(tjobs.job_for(pool, tjobs.echo), 1).result(30)
    caught["pool never shut down"] = find_leaks(before, timeout=0.2)
    pool.shutdown()
    before = snapshot()
    with tjobs.Gate() as gate, pools.create_pool(backend, workers=1) as pool:
        fn = _astubborn if pool.capabilities.runs == "coroutines" else _stubborn
        if backend == "process":
            fn = tjobs.hold
        job = pool.submit(fn, gate, timeout=0.05)
        try:
            job.result(30)
        except pools.JobTimeout:
            pass
        report = pool.shutdown(timeout=0.1)
        caught["job ignoring its timeout"] = find_leaks(before, timeout=0.2)
    caught["after cleanup"] = find_leaks(before, timeout=5)
    return Result(
        jobs=case.scenario.jobs,
        completed=1,
        findings=LeakFindings(
            caught={k: len(v) for k, v in caught.items()},
            details={k: [str(x) for x in v] for k, v in caught.items()},
            abandoned_threads_reported=report.abandoned_threads,
        ),
    )


def note(f: LeakFindings) -> str:
    return "leak checker caught: " + ", ".join(f"{k}: {v}" for k, v in f.caught.items())


EXPERIMENT = Experiment("leaks", run, LeakFindings, ours_only("leaks shows the leak checker on a pool"), note)
