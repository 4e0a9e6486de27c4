"""No-op jobs on 2 workers, ours beside what users would pick instead, in one process.

The figures of the README's "Second round" section. Each round submits ``--jobs``
no-ops and waits for all of them; rounds are interleaved (ours, then each contender,
repeated) and every side is started and warmed before the first one. Ours runs armed:
a priority and a 60 s timeout on every job.

- ``thread``: the thread pool against ``ThreadPoolExecutor(2)``; also CPU time a job
  (``time.process_time``, every thread of the process).
- ``asyncio``: on the caller's own loop, ``asyncio.gather`` of the pool's jobs against
  ``gather`` of coroutines behind a ``Semaphore(2)`` and a ``TaskGroup`` of 2 consumers.

Run from the repository root, compiled or pure::

    .venv/bin/python -m benchmarks.noop_ratios [--jobs 20000] [--rounds 9]
    POOLBENCH_PURE_PYTHON=1 .venv/bin/python -m benchmarks.noop_ratios
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import statistics
import time
from collections.abc import Awaitable, Callable

import pools
from pools._compiled import compiled_modules

from .asyncio_contenders import anoop, gather_semaphore, taskgroup_of_consumers

WORKERS = 2


def noop() -> None:
    return None


def _thread_round(submit: Callable[[], concurrent.futures.Future[None]], n: int) -> tuple[float, float]:
    """(jobs/s, CPU µs a job) of one round."""
    t, c = time.perf_counter(), time.process_time()
    concurrent.futures.wait([submit() for _ in range(n)])
    return n / (time.perf_counter() - t), (time.process_time() - c) / n * 1e6


def thread_case(n: int, rounds: int) -> None:
    pool = pools.create_pool("thread", workers=WORKERS, queue_size=n)
    tpe = concurrent.futures.ThreadPoolExecutor(WORKERS)
    sides: dict[str, Callable[[], concurrent.futures.Future[None]]] = {
        "thread (ours)": lambda: pool.submit(noop, priority=1, timeout=60),
        "ThreadPoolExecutor": lambda: tpe.submit(noop),
    }
    try:
        for submit in sides.values():  # warm: every worker started, the code paths run
            _thread_round(submit, 1000)
        got: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for _ in range(rounds):
            for name, submit in sides.items():
                got[name].append(_thread_round(submit, n))
    finally:
        pool.shutdown()
        tpe.shutdown()
    theirs = statistics.median(r for r, _ in got["ThreadPoolExecutor"])
    for name, results in got.items():
        rate = statistics.median(r for r, _ in results)
        cpu = statistics.median(c for _, c in results)
        print(f"  {name:22s} {rate:9,.0f} jobs/s  {rate / theirs:.2f}x ThreadPoolExecutor  CPU {cpu:.1f} µs a job")


async def _ours(n: int) -> None:
    async with pools.create_pool("asyncio", workers=WORKERS, queue_size=n) as pool:
        await asyncio.gather(*[pool.submit(anoop, priority=1, timeout=60) for _ in range(n)])


def asyncio_case(n: int, rounds: int) -> None:
    # Each round is one asyncio.run: the pool on the caller's loop lives as long as its
    # loop, so ours pays its start-up in every round (the others make their Semaphore
    # or consumers in theirs).
    sides: dict[str, Callable[[int], Awaitable[object]]] = {
        "asyncio (ours)": _ours,
        "gather + Semaphore": functools.partial(gather_semaphore, workers=WORKERS),
        "TaskGroup of consumers": functools.partial(taskgroup_of_consumers, workers=WORKERS),
    }
    for fn in sides.values():
        asyncio.run(fn(1000))  # type: ignore[arg-type]
    got: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t = time.perf_counter()
            asyncio.run(fn(n))  # type: ignore[arg-type]
            got[name].append(n / (time.perf_counter() - t))
    medians = {name: statistics.median(v) for name, v in got.items()}
    for name, rate in medians.items():
        print(
            f"  {name:22s} {rate:9,.0f} jobs/s  {rate / medians['gather + Semaphore']:.2f}x gather + Semaphore"
            f"  {rate / medians['TaskGroup of consumers']:.2f}x TaskGroup"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(f"compiled modules: {', '.join(compiled_modules()) or 'none (pure Python)'}")
    print(f"thread, {WORKERS} workers, {args.jobs} no-ops a round, median of {args.rounds}:")
    thread_case(args.jobs, args.rounds)
    print(f"asyncio on the caller's loop, {WORKERS} workers, {args.jobs} no-ops a round, median of {args.rounds}:")
    asyncio_case(args.jobs, args.rounds)


if __name__ == "__main__":
    main()
