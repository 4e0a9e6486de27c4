"""pytest-benchmark: what the worker lifecycle options cost.

    make bench     # real timings (results/benchmarks.json)
    make test      # each runs once, untimed (--benchmark-disable): a smoke test

- recycling: jobs/s of no-op jobs on the process backend with ``max_tasks_per_worker=100``
  (a new worker process every 100 jobs) beside the same pool without it;
- resize latency: from ``pool.resize(4)`` on a pool of 1 busy worker with 3 jobs
  waiting to the moment all 4 jobs are running (thread: threads started; process:
  worker processes started, forkserver).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

import pools
from pools.testing import jobs
from pools.testing.bench import warm
from pools.testing.jobs import Gate, Latch

BATCH = 2000
WORKERS = 4


@pytest.fixture(scope="module", params=[None, 100], ids=["fixed workers", "max_tasks_per_worker=100"])
def process_pool(request: pytest.FixtureRequest) -> Iterator[pools.Pool]:
    p = pools.create_pool("process", workers=WORKERS, queue_size=BATCH, max_tasks_per_worker=request.param)
    warm(p.submit, WORKERS, jobs.hold)
    yield p
    p.shutdown(timeout=30)


@pytest.mark.benchmark(group="recycling: process, no-op jobs")
def test_recycling_cost(benchmark: Any, process_pool: pools.Pool) -> None:
    def batch() -> list[pools.Job[int]]:
        # A builtin: a new worker imports nothing to run it, so the figure is the cost of
        # the replacement itself (a job of a module also pays that module's import).
        submitted = [process_pool.submit(abs, -1) for _ in range(BATCH)]
        concurrent.futures.wait(submitted)
        return submitted

    benchmark.extra_info.update(
        backend="process", jobs=BATCH, max_tasks_per_worker=process_pool.options.max_tasks_per_worker
    )
    done = benchmark.pedantic(batch, rounds=5, warmup_rounds=1)
    assert all(job.result() == 1 for job in done)
    if process_pool.options.max_tasks_per_worker:
        assert process_pool.stats().recycled >= BATCH // 100 - WORKERS


@pytest.mark.parametrize("backend", ["thread", "process"])
@pytest.mark.benchmark(group="resize 1 -> 4: until 4 jobs run")
def test_resize_latency(benchmark: Any, backend: str) -> None:
    pool = pools.create_pool(backend, workers=1, queue_size=10)
    held: list[tuple[Gate, Latch, list[pools.Job[Any]]]] = []

    def setup() -> tuple[tuple[Latch], dict[str, Any]]:
        if held:  # the previous round: let its jobs end, back to one worker
            gate, latch, previous = held.pop()
            gate.open()
            concurrent.futures.wait(previous)
            gate.close()
            latch.close()
            pool.resize(1)
        gate, latch = Gate(), Latch()
        submitted = [pool.submit(jobs.hold, gate, latch) for _ in range(4)]
        assert latch.wait(1, 30)  # one runs, three wait
        held.append((gate, latch, submitted))
        return (latch,), {}

    def resize_until_busy(latch: Latch) -> None:
        pool.resize(4)
        assert latch.wait(4, 30)

    benchmark.extra_info.update(backend=backend)
    try:
        benchmark.pedantic(resize_until_busy, setup=setup, rounds=10)
    finally:
        for gate, latch, submitted in held:
            gate.open()
            concurrent.futures.wait(submitted)
            gate.close()
            latch.close()
        pool.shutdown(timeout=30)
