"""What ``poolbench demo`` runs: a few hundred jobs through every available backend.

Each backend gets the same mix: 1 ms sleeps, jobs that fail once and are retried,
jobs that always fail, and jobs that overrun a 50 ms timeout. The table shows
what each pool's ``stats()`` said at the end, and the wall time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

from pools import Retry, available_backends, create_pool, current_context


class DemoFailure(RuntimeError):
    pass


def work(kind: str, ms: float) -> str:
    if kind == "flaky" and current_context().attempt == 1:
        raise DemoFailure("fails on its first attempt")
    if kind == "broken":
        raise DemoFailure("always fails")
    if kind == "slow":
        current_context().wait(ms / 1000)  # stops early once timed out
        return kind
    time.sleep(ms / 1000)
    return kind


async def awork(kind: str, ms: float) -> str:
    if kind == "flaky" and current_context().attempt == 1:
        raise DemoFailure("fails on its first attempt")
    if kind == "broken":
        raise DemoFailure("always fails")
    await asyncio.sleep(ms / 1000)
    return kind


def _mix(jobs: int) -> list[tuple[str, float, float | None]]:
    out: list[tuple[str, float, float | None]] = []
    for i in range(jobs):
        if i % 50 == 7:
            out.append(("broken", 1.0, None))
        elif i % 50 == 13:
            out.append(("slow", 1000.0, 0.05))
        elif i % 10 == 3:
            out.append(("flaky", 1.0, None))
        else:
            out.append(("ok", 1.0, None))
    return out


def run_backend(backend: str, jobs: int, workers: int):
    fn = awork if backend == "asyncio" else work
    retry = Retry(attempts=2, backoff=0.001, on=(DemoFailure,))
    t0 = time.perf_counter()
    with create_pool(backend, workers=workers, queue_size=2 * workers) as pool:
        futures = [
            pool.submit(fn, kind, ms, timeout=timeout, retry=retry if kind == "flaky" else None)
            for kind, ms, timeout in _mix(jobs)
        ]
        concurrent.futures.wait(futures)
    elapsed = time.perf_counter() - t0
    return pool.stats(), elapsed


def run_demo(*, jobs: int = 400, workers: int = 4) -> int:
    print(f"poolbench demo: {jobs} jobs (1 ms sleeps, retried, failing, timing out) on {workers} workers\n")
    header = f"{'backend':<9} {'jobs/s':>8} {'ok':>5} {'failed':>6} {'timeout':>7} {'retried':>7} {'p50 wait ms':>11} {'p99 run ms':>10}"
    print(header)
    print("-" * len(header))
    for backend in available_backends():
        stats, elapsed = run_backend(backend, jobs, workers)
        if not stats.conserved():
            print(f"{backend}: jobs were lost: {stats}")
            return 1
        print(
            f"{backend:<9} {stats.submitted / elapsed:>8.0f} {stats.succeeded:>5} {stats.failed:>6} "
            f"{stats.timed_out:>7} {stats.retried:>7} {1000 * (stats.queue_wait_p50 or 0):>11.2f} "
            f"{1000 * (stats.run_time_p99 or 0):>10.2f}"
        )
    print("\nEvery accepted job ended in exactly one state (stats().conserved() held on each backend).")
    return 0
