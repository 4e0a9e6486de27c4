"""Go's sync primitives, Python's answers: Lock, RLock, Semaphore, Condition, Event,
Queue, SimpleQueue, a readers-writer lock and an atomic-style counter — Go's Mutex,
RWMutex, WaitGroup and atomic — in operations per second, with ``workers`` threads.
No pool: it runs once, as the thread implementation."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..implementations import Implementation
from ..result import Result
from ..spec import Case
from . import Experiment

__all__ = ["EXPERIMENT", "PrimitivesFindings", "RWLock"]


@dataclass(frozen=True)
class PrimitivesFindings:
    #: primitive → operations per second, all threads together
    ops_per_s: dict[str, float] = field(default_factory=dict)


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


def run(case: Case, impl: Implementation, seed: int) -> Result:
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
    return Result(
        jobs=case.scenario.jobs,
        completed=threads * ops,
        throughput=results["Lock (Mutex)"],
        findings=PrimitivesFindings(ops_per_s=results),
    )


def applies(impl: Implementation) -> str | None:
    if impl.name == "thread":
        return None
    return "primitives times Python's threading primitives with threads of its own, no pool: it runs as 'thread' only"


def note(f: PrimitivesFindings) -> str:
    return "; ".join(f"{k} {v / 1e6:.2f}M/s" for k, v in f.ops_per_s.items() if v)


EXPERIMENT = Experiment("primitives", run, PrimitivesFindings, applies, note)
