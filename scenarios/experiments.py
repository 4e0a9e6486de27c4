"""The course's key questions that are not a load: each a driver that returns the
same metrics dict as a load run (what does not apply is None), with its own
findings in ``extra``.

- cancel_latency: cancel vs timeout, from cancel() / the deadline to the caller
  seeing the job end, per backend.
- primitives: Lock, RLock, Semaphore, Condition, Event, Queue, SimpleQueue, a
  readers-writer lock and an atomic-style counter — Python's answers to Go's
  Mutex, RWMutex, WaitGroup and atomic — in operations per second.
- leaks: what the leak checker catches when a job or a pool is left running.
- racy_pool: the conformance kit run on a deliberately racy pool: what it catches.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pools
from pools.testing import find_leaks, snapshot
from pools.testing import jobs as tjobs

from .spec import Case
from .stats import percentile


def _note_end(seen: list[float], ended: threading.Event, _job: object) -> None:
    seen.append(time.monotonic())
    ended.set()


def _result(case: Case, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jobs": case.scenario.jobs,
        "completed": 0,
        "failed": 0,
        "timed_out": 0,
        "cancelled": 0,
        "rejected": 0,
        "retried": 0,
        "wall_s": None,
        "throughput": None,
        "lat_p50_ms": None,
        "lat_p95_ms": None,
        "lat_p99_ms": None,
        "lat_max_ms": None,
        "queue_wait_ms": None,
        "dispatch_ms": None,
        "run_ms": None,
        "return_ms": None,
        "cpu_s": None,
        "peak_rss_mb": None,
        "offered_rate": None,
        "achieved_rate": None,
        "generator_cpu": None,
        "generator_bound": False,
        "extra": {},
    }
    base.update(fields)
    return base


# ------------------------------------------------------------ cancel vs timeout


def cancel_latency(case: Case, backend: str, seed: int) -> dict[str, Any]:
    """Alternate: a running job is cancelled, then a job runs into its timeout.
    Cancel latency: cancel() called → done-callback ran. Timeout overshoot: the
    deadline → done-callback ran. Every job is a probe (``until_stopped`` with a
    marker) that tells whether its function was really stopped: on a cooperative
    backend it watches its context, on one that kills or cancels it does not; one
    still running ``STOP_GRACE`` seconds after it should have stopped leaves its
    marker, counted once the pool is shut down (every thread joined, every worker
    process and task ended)."""
    sc = case.scenario
    cancels, overshoots = [], []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="poolbench-cancel-") as markers:
        with pools.create_pool(backend, workers=sc.workers) as pool:
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
                        job.add_done_callback(functools.partial(_note_end, seen, ended))
                        t_cancel = time.monotonic()
                        job.cancel()
                        if ended.wait(30) and seen:
                            cancels.append(seen[0] - t_cancel)
                    else:
                        # may be stopped before it starts
                        job = pool.submit(stop, None, marker, tjobs.STOP_GRACE, forced, timeout=0.02)
                        job.add_done_callback(functools.partial(_note_end, seen, ended))
                        # a job stopped before a worker took it has no start: no overshoot to measure
                        if ended.wait(30) and seen and job.started_at:
                            overshoots.append(seen[0] - (job.started_at + 0.02))
            stats = pool.stats()
        kept_running = len(os.listdir(markers))
    ms = lambda v: None if v is None else v * 1000  # noqa: E731
    return _result(
        case,
        completed=stats.cancelled + stats.timed_out,
        cancelled=stats.cancelled,
        timed_out=stats.timed_out,
        wall_s=time.monotonic() - t0,
        lat_p50_ms=ms(percentile(cancels, 0.5)),
        lat_p95_ms=ms(percentile(cancels, 0.95)),
        lat_p99_ms=ms(percentile(cancels, 0.99)),
        lat_max_ms=ms(max(cancels) if cancels else None),
        extra={
            "cancel_ms": {"p50": ms(percentile(cancels, 0.5)), "p99": ms(percentile(cancels, 0.99)), "n": len(cancels)},
            "timeout_overshoot_ms": {
                "p50": ms(percentile(overshoots, 0.5)),
                "p99": ms(percentile(overshoots, 0.99)),
                "n": len(overshoots),
            },
            "kept_running": kept_running,
            "probes": sc.jobs,
            "stop": "forced" if forced else "cooperative",
        },
    )


# ------------------------------------------------------------ primitives


class RWLock:
    """Many readers or one writer (writer-preferring): Go's sync.RWMutex in Python."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


def _ops_per_second(threads: int, ops: int, body: Callable[[int], None]) -> float:
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        body(ops)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in ts:
        t.join()
    return threads * ops / (time.perf_counter() - start)


def primitives(case: Case, backend: str, seed: int) -> dict[str, Any]:
    threads, ops = case.scenario.workers, max(1, case.scenario.jobs // case.scenario.workers)
    results: dict[str, float] = {}

    def with_lock(lock):
        def body(n):
            shared = [0]
            for _ in range(n):
                with lock:
                    shared[0] += 1

        return body

    results["Lock (Mutex)"] = _ops_per_second(threads, ops, with_lock(threading.Lock()))
    results["RLock"] = _ops_per_second(threads, ops, with_lock(threading.RLock()))
    results["Semaphore(4)"] = _ops_per_second(threads, ops, with_lock(threading.Semaphore(4)))
    rw = RWLock()

    def rw_body(n):
        for i in range(n):
            if i % 10:
                rw.acquire_read()
                rw.release_read()
            else:
                rw.acquire_write()
                rw.release_write()

    results["RWLock 90% reads (RWMutex)"] = _ops_per_second(threads, ops, rw_body)
    counter = itertools.count()

    def atomic_body(n):
        nxt = counter.__next__  # one C call under the GIL: atomic, like atomic.AddInt64
        for _ in range(n):
            nxt()

    results["itertools.count (atomic add)"] = _ops_per_second(threads, ops, atomic_body)
    event = threading.Event()

    def event_body(n):
        for _ in range(n):
            event.set()
            event.is_set()

    results["Event set/is_set"] = _ops_per_second(threads, ops, event_body)
    for name, q in (("queue.Queue put/get (channel)", queue.Queue()), ("SimpleQueue put/get", queue.SimpleQueue())):

        def q_body(n, q=q):
            for i in range(n):
                q.put(i)
                q.get()

        results[name] = _ops_per_second(threads, ops, q_body)
    cond = threading.Condition()

    def cond_body(n):
        for _ in range(n):
            with cond:
                cond.notify()

    results["Condition notify"] = _ops_per_second(threads, ops, cond_body)

    def waitgroup_body(n):  # Go's WaitGroup: here, a Barrier round per op is too slow; join is the idiom
        for _ in range(max(1, n // 100)):
            t = threading.Thread(target=lambda: None)
            t.start()
            t.join()

    results["Thread start+join (WaitGroup), per op"] = _ops_per_second(threads, ops, waitgroup_body) / 100
    return _result(case, completed=threads * ops, throughput=results["Lock (Mutex)"], extra={"ops_per_s": results})


# ------------------------------------------------------------ leaks


def _stubborn(gate: tjobs.Gate) -> None:
    gate.wait()  # ignores its context: only the gate ends it


async def _astubborn(gate: tjobs.Gate) -> None:
    await gate.wait_async()


def leaks(case: Case, backend: str, seed: int) -> dict[str, Any]:
    """Two mistakes, each shown to the leak checker: a pool never shut down, and a
    job that ignores its context and outlives its timeout."""
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
    return _result(
        case,
        completed=1,
        extra={
            "caught": {k: len(v) for k, v in caught.items()},
            "details": caught,
            "abandoned_threads_reported": report.abandoned_threads,
        },
    )


# ------------------------------------------------------------ racy pool

_RACY_CONFTEST = '''
import pools
from pools.thread import ThreadBackend


class RacyBackend(ThreadBackend):
    """Two classic backend bugs, written against pools.lowlevel as a user's backend
    would be: work abandoned by a timeout counted twice, and a cancel that never
    reaches the running job."""

    name = "racy"

    def preempted_locked(self, job):
        super().preempted_locked(job)
        self.dispatcher.add_abandoned_locked(1)  # a double count: stats().abandoned never returns to 0

    def stop_attempt(self, job, attempt):
        pass  # a lost stop: the job's context is never cancelled, its function runs on


pools.register_backend("racy", RacyBackend)
'''

_RACY_TEST = """
from pools.testing.conformance import PoolConformance


class TestRacy(PoolConformance):
    backends = ("racy",)
    stop_grace = 0.5  # a probe left running reports itself after 0.5 s
"""


def racy_pool(case: Case, backend: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "conftest.py"), "w") as f:
            f.write(textwrap.dedent(_RACY_CONFTEST))
        with open(os.path.join(tmp, "test_racy.py"), "w") as f:
            f.write(textwrap.dedent(_RACY_TEST))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--rootdir",
                tmp,
                tmp,
                "-rf",
                "-o",
                "addopts=",
                "--timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp,
        )
    failed = sorted(
        {
            line.split("::")[-1].split(" ")[0].split("[")[0]
            for line in proc.stdout.splitlines()
            if line.startswith("FAILED")
        }
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return _result(case, completed=1, failed=len(failed), extra={"caught_by": failed, "summary": summary})
