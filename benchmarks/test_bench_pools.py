"""pytest-benchmark suite: the core scenarios on each backend, beside the stdlib.

    make bench     # real timings, JSON in results/benchmarks.json for the report
    make test      # runs these once each, untimed (--benchmark-disable): a smoke test

Each benchmark round submits a batch of jobs and waits for all of them; pools are
started once per module so that a round times the jobs, not pool start-up.
Throughput ratios are read from the same run (the report divides medians).
"""

import asyncio
import concurrent.futures
import time

import pytest

import pools
from scenarios import jobtypes

BATCH = 500
SLEEP_BATCH = 200
BACKENDS = [b for b in ("thread", "process", "asyncio") if b in pools.available_backends()]


def noop():
    return None


def sleep_1ms():
    time.sleep(0.001)


@pytest.fixture(scope="module", params=BACKENDS)
def pool(request):
    p = pools.create_pool(request.param, workers=4, queue_size=BATCH)
    p.start()
    yield p
    p.shutdown(timeout=30)


def _batch(pool, name, params, n):
    fn = jobtypes.job_for(pool, name)
    jobs = [pool.submit(fn, params) for _ in range(n)]
    concurrent.futures.wait(jobs)
    return jobs


@pytest.mark.benchmark(group="noop")
def test_noop(benchmark, pool):
    benchmark.extra_info.update(backend=pool.backend, jobs=BATCH)
    jobs = benchmark(_batch, pool, "noop", {}, BATCH)
    assert all(j.status == "succeeded" for j in jobs)


@pytest.mark.benchmark(group="sleep_1ms")
def test_sleep_1ms(benchmark, pool):
    benchmark.extra_info.update(backend=pool.backend, jobs=SLEEP_BATCH)
    jobs = benchmark(_batch, pool, "sleep", {"ms": 1.0}, SLEEP_BATCH)
    assert all(j.status == "succeeded" for j in jobs)


@pytest.mark.benchmark(group="map")
def test_map(benchmark, pool):
    benchmark.extra_info.update(backend=pool.backend, jobs=BATCH)
    fn = jobtypes.job_for(pool, "echo")
    out = benchmark(lambda: list(pool.map(fn, [{"value": i} for i in range(BATCH)])))
    assert out == list(range(BATCH))


# ----------------------------------------------------------- async, on the pool's own loop


async def _async_batch(name, params, n):
    async with pools.create_pool("asyncio", workers=4, queue_size=n) as p:
        fn = jobtypes.job_for(p, name)
        return await asyncio.gather(*(p.submit(fn, params) for _ in range(n)))


@pytest.mark.benchmark(group="noop")
def test_noop_asyncio_from_its_own_loop(aio_benchmark, benchmark):
    benchmark.extra_info.update(backend="asyncio (own loop)", jobs=BATCH)
    out = aio_benchmark(_async_batch, "noop", {}, BATCH)
    assert out == [None] * BATCH


# ----------------------------------------------------------- stdlib contenders, same run


@pytest.fixture(scope="module")
def tpe():
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        yield ex


@pytest.fixture(scope="module")
def ppe():
    with concurrent.futures.ProcessPoolExecutor(4) as ex:
        ex.submit(noop).result()
        yield ex


@pytest.mark.benchmark(group="noop")
def test_noop_threadpoolexecutor(benchmark, tpe):
    benchmark.extra_info.update(backend="ThreadPoolExecutor", jobs=BATCH)
    benchmark(lambda: concurrent.futures.wait([tpe.submit(noop) for _ in range(BATCH)]))


@pytest.mark.benchmark(group="noop")
def test_noop_processpoolexecutor(benchmark, ppe):
    benchmark.extra_info.update(backend="ProcessPoolExecutor", jobs=BATCH)
    benchmark(lambda: concurrent.futures.wait([ppe.submit(noop) for _ in range(BATCH)]))


@pytest.mark.benchmark(group="sleep_1ms")
def test_sleep_1ms_threadpoolexecutor(benchmark, tpe):
    benchmark.extra_info.update(backend="ThreadPoolExecutor", jobs=SLEEP_BATCH)
    benchmark(lambda: concurrent.futures.wait([tpe.submit(sleep_1ms) for _ in range(SLEEP_BATCH)]))


async def _gather_semaphore(n):
    sem = asyncio.Semaphore(4)

    async def one():
        async with sem:
            return None

    return await asyncio.gather(*(one() for _ in range(n)))


@pytest.mark.benchmark(group="noop")
def test_noop_asyncio_gather_semaphore(aio_benchmark, benchmark):
    benchmark.extra_info.update(backend="asyncio.gather + Semaphore", jobs=BATCH)
    assert aio_benchmark(_gather_semaphore, BATCH) == [None] * BATCH
