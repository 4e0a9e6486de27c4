"""Benchmark your own function on every pool, inside your own test suite:

    pytest examples/test_pool_benchmark_example.py -o addopts= --benchmark-json bench.json
    pytest examples/test_pool_benchmark_example.py -o addopts= --benchmark-autosave    # then, later:
    pytest examples/test_pool_benchmark_example.py -o addopts= --benchmark-compare --benchmark-histogram

(``-o addopts=`` drops this repository's own ``--benchmark-disable``; a project of
your own does not need it.) Each call of ``pool_benchmark`` is one group of
pytest-benchmark results, one per implementation: ``test_checksum[thread]``,
``test_checksum[ProcessPoolExecutor]``... Each round submits one job per argument
tuple and waits for all of them. ``poolbench report`` shows the JSON beside a run
(``--benchmarks bench.json``, or ``results/benchmarks.json``).
"""

import asyncio
import hashlib

import pytest

BLOCKS = [(i, 20_000) for i in range(64)]  # one job per tuple: checksum(seed, size)


def checksum(seed: int, size: int) -> str:
    """CPU-bound: hashing in pure Python loops holds the GIL."""
    data = bytes((seed + i) % 256 for i in range(size))
    return hashlib.sha256(data).hexdigest()


async def fetch(seed: int, size: int) -> int:
    """I/O-bound: waits as a network call would."""
    await asyncio.sleep(0.001)
    return seed + size


def test_checksum(pool_benchmark):
    results = pool_benchmark(
        checksum,
        BLOCKS,
        implementations=["thread", "process", "ThreadPoolExecutor", "ProcessPoolExecutor"],
        workers=2,
    )
    assert results["thread"] == results["process"] == [checksum(*b) for b in BLOCKS]


@pytest.mark.benchmark(group="fetch: workers")
def test_fetch_workers(pool_benchmark):
    # A coroutine function: the asyncio backend and asyncio.gather, swept over the workers.
    pool_benchmark(fetch, BLOCKS, workers=[4, 16, 64])
