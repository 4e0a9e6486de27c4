"""The poolbench pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``pool_backend``: every name in ``pools.available_backends()``; a test class may
  narrow it with a ``backends = ("thread",)`` attribute.
- ``make_pool``: ``make_pool(**options)`` creates a pool of ``pool_backend`` (or
  ``make_pool("thread", ...)``); at teardown each pool is shut down, which must
  finish within ``SHUTDOWN_LIMIT`` seconds and leave every job in a terminal state.
- ``leak_check``: fails the test if it leaves a thread, process, asyncio task or
  open pool behind (see :mod:`pools.testing`). Request it, or make it autouse in
  a conftest: ``@pytest.fixture(autouse=True) def _no_leaks(leak_check): pass``.
- ``aio_benchmark``: pytest-benchmark for coroutine functions, which it does not
  support itself: ``aio_benchmark(async_fn, *args)`` times ``await async_fn(*args)``
  on one event loop kept for the whole test (needs pytest-benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .. import Pool, available_backends, create_pool
from ._leaks import find_leaks, snapshot

SHUTDOWN_LIMIT = 10.0
LEAK_WAIT = 10.0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pool_backend" in metafunc.fixturenames:
        backends = getattr(metafunc.cls, "backends", None) or available_backends()
        metafunc.parametrize("pool_backend", list(backends))


@pytest.fixture
def make_pool(request: pytest.FixtureRequest) -> Iterator[Callable[..., Pool]]:
    made: list[Pool] = []

    def factory(backend: str | None = None, **options: Any) -> Pool:
        if backend is None:
            backend = request.getfixturevalue("pool_backend")
        pool = create_pool(backend, **options)
        made.append(pool)
        return pool

    yield factory
    problems = []
    for pool in made:
        t0 = time.monotonic()
        pool.shutdown(wait=True, timeout=SHUTDOWN_LIMIT / 2, cancel_pending=True)
        took = time.monotonic() - t0
        if took > SHUTDOWN_LIMIT:
            problems.append(f"{pool!r}: shutdown took {took:.1f}s (limit {SHUTDOWN_LIMIT}s)")
        stats = pool.stats()
        if not stats.conserved() or stats.queued or stats.busy or stats.retrying:
            problems.append(f"{pool!r}: jobs left unfinished after shutdown: {stats}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def leak_check() -> Iterator[None]:
    before = snapshot()
    yield
    leaks = find_leaks(before, timeout=LEAK_WAIT)
    if leaks:
        pytest.fail("leaked: " + "; ".join(leaks), pytrace=False)


@pytest.fixture
def aio_benchmark(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    import asyncio

    benchmark = request.getfixturevalue("benchmark")  # from pytest-benchmark
    loop = asyncio.new_event_loop()

    def run(async_fn: Callable[..., Any], *args: Any) -> Any:
        return benchmark(lambda: loop.run_until_complete(async_fn(*args)))

    try:
        yield run
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
