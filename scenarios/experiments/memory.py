"""The memory of waiting jobs: the extra resident memory (this process and its
workers) of ``jobs`` jobs left waiting behind one busy worker, per 100k, and the
allocation per job from tracemalloc with the source lines that make it."""

from __future__ import annotations

import gc
import linecache
import os
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pools.testing.jobs import Gate, Latch, wait_held

from ..implementations import Implementation, Session
from ..result import Result
from ..spec import Case
from ..workload import resolve_mix
from . import Experiment
from .load import outcome, submit_hold

__all__ = ["EXPERIMENT", "MemoryFindings", "outcomes"]

TRACED = 20_000  # jobs submitted under tracemalloc (it slows every allocation)
ARMED_TIMEOUT = 60.0
PREPARED = "one worker, held busy by a job before the baseline is read; the jobs wait behind it"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class MemoryFindings:
    waiting: int = 0
    extra_rss_mb: float | None = None
    #: extra RSS scaled to 100k waiting jobs
    mb_per_100k: float | None = None
    bytes_per_job: float | None = None
    traced: int = 0
    #: [where, bytes per job, source line]: the lines that allocate the most
    top: list[tuple[str, float, str]] = field(default_factory=list)
    prepared: str = ""


def _rss() -> int:
    """RSS of this process and all its children (worker processes), in bytes."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


@contextmanager
def _one_worker_held(impl: Implementation, n: int) -> Iterator[Session]:
    """The implementation with one worker, held busy by a job, and room for ``n``
    waiting jobs behind it."""
    with impl.open(workers=1, queue_size=n, overflow="block") as session, Gate() as gate, Latch() as latch:
        f = submit_hold(session, gate, latch, None)
        if f is None or not wait_held(latch, [f], 60):
            raise RuntimeError(
                f"{impl.label} runs its jobs inside submit(), in the submitting thread: no job ever waits, so "
                "there is no memory of waiting jobs to measure"
            )
        try:
            yield session
        finally:
            gate.open()


def _cancel(futures: list[Any]) -> None:
    """Measured: the waiting jobs need not run. Those that can be cancelled are (a
    ``ProcessPoolExecutor`` would otherwise run 100k of them before it closes); the
    others run as their session closes, or are dropped by it (a TaskGroup's consumers
    are cancelled with the jobs still on their queue)."""
    for fut in reversed(futures):  # the last submitted first: the furthest from a worker
        fut.cancel()


def outcomes(futures: list[Any]) -> Counter[str]:
    """What became of the jobs once their session closed (``load.outcome``); a job that
    its session dropped, never done (a TaskGroup's queue at its close), counts as
    cancelled."""
    return Counter(outcome(f) if f.done() else "cancelled" for f in futures)


def _short(path: str) -> str:
    if path.startswith(ROOT + os.sep):
        return os.path.relpath(path, ROOT)
    return os.sep.join(path.split(os.sep)[-2:])


def run(case: Case, impl: Implementation, seed: int) -> Result:
    sc = case.scenario
    (work,) = resolve_mix(sc.workloads[:1], limit=1, seed=seed)
    fn, args = work.form(impl.runs), work.args[0]
    if fn is None:
        raise RuntimeError(work.unfit(impl.runs, pickles=False, implementation=impl.label))
    ours = impl.kind == "ours"
    options: dict[str, Any] = {"timeout": ARMED_TIMEOUT} if ours and sc.armed else {}

    def submit_all(session: Session, futures: list[Any], before: Callable[[], Any]) -> Any:
        # `futures` is made before the baseline: holding the jobs' futures adds nothing
        # to what is measured.
        gc.collect()
        baseline = before()
        for i in range(len(futures)):
            futures[i] = session.submit(fn, args, **({"priority": i & 1} | options if ours and sc.armed else {}))
        gc.collect()
        return baseline

    n = sc.jobs
    futures: list[Any] = [None] * n
    with _one_worker_held(impl, n) as session:
        before = submit_all(session, futures, _rss)
        extra = _rss() - before
        _cancel(futures)
    ended = outcomes(futures)
    m = min(n, TRACED)
    futures = [None] * m
    with _one_worker_held(impl, m) as session:
        tracemalloc.start()
        try:
            first = submit_all(session, futures, tracemalloc.take_snapshot)
            second = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        _cancel(futures)
    del futures
    skip = (tracemalloc.Filter(False, tracemalloc.__file__),)
    diff = second.filter_traces(skip).compare_to(first.filter_traces(skip), "lineno")
    top = [
        (f"{_short(f.filename)}:{f.lineno}", d.size_diff / m, linecache.getline(f.filename, f.lineno).strip()[:60])
        for d in sorted(diff, key=lambda d: -d.size_diff)[:6]
        if d.size_diff > 0
        for f in [d.traceback[0]]
    ]
    return Result(
        jobs=n,
        completed=ended["succeeded"],
        failed=ended["failed"],
        timed_out=ended["timed_out"],
        cancelled=ended["cancelled"],
        findings=MemoryFindings(
            waiting=n,
            extra_rss_mb=extra / 1e6,
            mb_per_100k=extra / n * 100_000 / 1e6,
            bytes_per_job=sum(d.size_diff for d in diff) / m,
            traced=m,
            top=top,
            prepared=f"{impl.prepared}; {PREPARED}",
        ),
    )


def note(f: MemoryFindings) -> str:
    if f.mb_per_100k is None:
        return ""
    return f"{f.mb_per_100k:.1f} MB per 100k waiting jobs, tracemalloc {f.bytes_per_job:,.0f} B/job"


EXPERIMENT = Experiment("memory", run, MemoryFindings, note=note)
