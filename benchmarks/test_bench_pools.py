"""pytest-benchmark suite: the core scenarios on each backend, beside the stdlib.

    make bench     # real timings, JSON in results/benchmarks.json for the report
    make test      # runs these once each, untimed (--benchmark-disable): a smoke test

Each benchmark round submits a batch of jobs and waits for all of them. Every pool and
executor, ours and the stdlib's alike, is made once per module and warmed before its
first round: each of its workers runs a job at the same time, so a round times the
jobs, not start-up (``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` start their
workers on demand). The exception is the asyncio pool on the caller's own loop, which
lives only as long as one ``asyncio.run``-like round: that round times the pool's
start-up, as the ``gather`` contender's round times making its Semaphore.
Throughput ratios are read from the same run (the report divides medians).

Under ``make test`` (``--benchmark-disable``) each runs once, untimed: the
benchmarks of ours check their results; those of the stdlib contenders are smoke
runs, named so, that check only that the contender ran its jobs.
"""

import asyncio
import concurrent.futures
import time

import pytest

import pools
from pools.testing import jobs
from pools.testing.bench import warm
from scenarios import jobtypes

from .asyncio_contenders import gather_semaphore, taskgroup_of_consumers

BATCH = 500
SLEEP_BATCH = 200
BACKENDS = [b for b in ("thread", "process", "asyncio") if b in pools.available_backends()]


def noop():
    return None


def sleep_1ms():
    time.sleep(0.001)


WORKERS = 4


@pytest.fixture(scope="module", params=BACKENDS)
def pool(request):
    p = pools.create_pool(request.param, workers=WORKERS, queue_size=BATCH)
    warm(p.submit, WORKERS, jobs.job_for(p, jobs.hold))
    yield p
    p.shutdown(timeout=30)


def _batch(pool, name, params, n):
    fn = jobtypes.job_for(pool, name)
    submitted = [pool.submit(fn, params) for _ in range(n)]
    concurrent.futures.wait(submitted)
    return submitted


def _ran_all(pool, batch) -> None:
    assert all(j.status == "succeeded" for j in batch)
    s = pool.stats()
    assert s.conserved() and s.failed == s.timed_out == s.cancelled == 0, s


@pytest.mark.benchmark(group="noop")
def test_noop(benchmark, pool):
    benchmark.extra_info.update(backend=pool.backend, jobs=BATCH)
    _ran_all(pool, benchmark(_batch, pool, "noop", {}, BATCH))


@pytest.mark.benchmark(group="sleep_1ms")
def test_sleep_1ms(benchmark, pool):
    benchmark.extra_info.update(backend=pool.backend, jobs=SLEEP_BATCH)
    _ran_all(pool, benchmark(_batch, pool, "sleep", {"ms": 1.0}, SLEEP_BATCH))


@pytest.mark.benchmark(group="map")
def test_map(benchmark, pool):
    benchmark.extra_info.update(backend=pool.backend, jobs=BATCH)
    fn = jobtypes.job_for(pool, "echo")
    out = benchmark(lambda: list(pool.map(fn, [{"value": i} for i in range(BATCH)])))
    assert out == list(range(BATCH))


# ----------------------------------------------------------- async, on the pool's own loop


async def _async_batch(name, params, n):
    async with pools.create_pool("asyncio", workers=WORKERS, queue_size=n) as p:
        fn = jobtypes.job_for(p, name)
        return await asyncio.gather(*(p.submit(fn, params) for _ in range(n)))


@pytest.mark.benchmark(group="noop")
def test_noop_asyncio_from_its_own_loop(aio_benchmark, benchmark):
    benchmark.extra_info.update(backend="asyncio (own loop)", jobs=BATCH)
    out = aio_benchmark(_async_batch, "noop", {}, BATCH)
    assert out == [None] * BATCH


# ----------------------------------------------------------- stdlib contenders, same run
# Smoke runs under `make test`: they check that the contender ran its jobs, nothing of
# poolbench's; under `make bench` they are the figures ours are divided by.


@pytest.fixture(scope="module")
def tpe():
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as ex:
        warm(ex.submit, WORKERS)
        yield ex


@pytest.fixture(scope="module")
def ppe():
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as ex:
        warm(ex.submit, WORKERS)
        yield ex


def _stdlib_batch(ex, fn, n):
    done, not_done = concurrent.futures.wait([ex.submit(fn) for _ in range(n)])
    return done, not_done


def _contender_ran_all(out, n) -> None:
    done, not_done = out
    assert len(done) == n and not not_done and all(f.exception() is None for f in done)


@pytest.mark.benchmark(group="noop")
def test_contender_smoke_noop_threadpoolexecutor(benchmark, tpe):
    benchmark.extra_info.update(backend="ThreadPoolExecutor", jobs=BATCH)
    _contender_ran_all(benchmark(_stdlib_batch, tpe, noop, BATCH), BATCH)


@pytest.mark.benchmark(group="noop")
def test_contender_smoke_noop_processpoolexecutor(benchmark, ppe):
    benchmark.extra_info.update(backend="ProcessPoolExecutor", jobs=BATCH)
    _contender_ran_all(benchmark(_stdlib_batch, ppe, noop, BATCH), BATCH)


@pytest.mark.benchmark(group="sleep_1ms")
def test_contender_smoke_sleep_1ms_threadpoolexecutor(benchmark, tpe):
    benchmark.extra_info.update(backend="ThreadPoolExecutor", jobs=SLEEP_BATCH)
    _contender_ran_all(benchmark(_stdlib_batch, tpe, sleep_1ms, SLEEP_BATCH), SLEEP_BATCH)


@pytest.mark.benchmark(group="noop")
def test_contender_smoke_noop_asyncio_gather_semaphore(aio_benchmark, benchmark):
    benchmark.extra_info.update(backend="asyncio.gather + Semaphore", jobs=BATCH)
    assert aio_benchmark(gather_semaphore, BATCH, WORKERS) == [None] * BATCH


@pytest.mark.benchmark(group="noop")
def test_contender_smoke_noop_asyncio_taskgroup(aio_benchmark, benchmark):
    benchmark.extra_info.update(backend="asyncio.TaskGroup of consumers", jobs=BATCH)
    assert aio_benchmark(taskgroup_of_consumers, BATCH, WORKERS) == [None] * BATCH
