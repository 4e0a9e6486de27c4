"""cancel vs timeout: from cancel() of a running job, or from its deadline, to the
caller seeing it end — and whether the job's function really stopped."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pools
from pools.testing import jobs as tjobs

from ..implementations import Implementation
from ..result import Percentiles, Result
from ..spec import Case
from ..stats import percentile
from . import Experiment, ours_only

__all__ = ["EXPERIMENT", "CancelFindings"]


@dataclass(frozen=True)
class CancelFindings:
    #: cancel() called → done-callback ran
    cancel_ms: Percentiles = field(default_factory=Percentiles)
    #: the deadline → done-callback ran
    timeout_overshoot_ms: Percentiles = field(default_factory=Percentiles)
    #: probes whose function still ran STOP_GRACE seconds after it should have stopped
    kept_running: int | None = None
    probes: int = 0
    #: "forced" (killed, task cancelled) or "cooperative" (its context cancelled)
    stop: str | None = None


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def _percentiles(values: list[float]) -> Percentiles:
    return Percentiles(_ms(percentile(values, 0.5)), _ms(percentile(values, 0.99)), len(values))


def _stamp(seen: list[float], ended: threading.Event) -> Callable[[Any], None]:
    """A done-callback: the moment the job ended into ``seen``, then ``ended`` set."""

    def done(_job: Any) -> None:
        seen.append(time.monotonic())
        ended.set()

    return done


def run(case: Case, impl: Implementation, seed: int) -> Result:
    """Alternate: a running job is cancelled, then a job runs into its timeout. Every
    job is a probe (``until_stopped`` with a marker) that tells whether its function
    was really stopped: on a cooperative backend it watches its context, on one that
    kills or cancels it does not; one still running ``STOP_GRACE`` seconds after it
    should have stopped leaves its marker, counted once the pool is shut down (every
    thread joined, every worker process and task ended)."""
    sc = case.scenario
    cancels, overshoots = [], []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="poolbench-cancel-") as markers:
        with pools.create_pool(impl.name, workers=sc.workers) as pool:
            stop = tjobs.job_for(pool, tjobs.until_stopped)
            forced = pool.capabilities.stops_running_jobs
            with tjobs.Latch() as latch:
                for i in range(sc.jobs):
                    ended = threading.Event()
                    seen: list[float] = []
                    marker = os.path.join(markers, str(i))
                    if i % 2 == 0:
                        job = pool.submit(stop, latch, marker, tjobs.STOP_GRACE, forced)
                        latch.wait(latch.count + 1, 30)
                        job.add_done_callback(_stamp(seen, ended))
                        t_cancel = time.monotonic()
                        job.cancel()
                        if ended.wait(30) and seen:
                            cancels.append(seen[0] - t_cancel)
                    else:
                        # may be stopped before it starts
                        job = pool.submit(stop, None, marker, tjobs.STOP_GRACE, forced, timeout=0.02)
                        job.add_done_callback(_stamp(seen, ended))
                        # a job stopped before a worker took it has no start: no overshoot to measure
                        if ended.wait(30) and seen and job.started_at:
                            overshoots.append(seen[0] - (job.started_at + 0.02))
            stats = pool.stats()
        kept_running = len(os.listdir(markers))
    return Result(
        jobs=sc.jobs,
        completed=stats.cancelled + stats.timed_out,
        cancelled=stats.cancelled,
        timed_out=stats.timed_out,
        wall_s=time.monotonic() - t0,
        lat_p50_ms=_ms(percentile(cancels, 0.5)),
        lat_p95_ms=_ms(percentile(cancels, 0.95)),
        lat_p99_ms=_ms(percentile(cancels, 0.99)),
        lat_max_ms=_ms(max(cancels) if cancels else None),
        findings=CancelFindings(
            cancel_ms=_percentiles(cancels),
            timeout_overshoot_ms=_percentiles(overshoots),
            kept_running=kept_running,
            probes=sc.jobs,
            stop="forced" if forced else "cooperative",
        ),
    )


def note(f: CancelFindings) -> str:
    c, o = f.cancel_ms.p50, f.timeout_overshoot_ms.p50
    out = (
        f"cancel p50 {'—' if c is None else f'{c:.2f} ms'}, timeout overshoot p50 {'—' if o is None else f'{o:.2f} ms'}"
    )
    if f.kept_running is not None:
        out += f", function ran on past its stop in {f.kept_running} of {f.probes} probes"
    return out


EXPERIMENT = Experiment(
    "cancel_latency", run, CancelFindings, ours_only("cancel_latency cancels running jobs of a pool"), note
)
