"""The public API as a type checker sees it from a user's code.

``make typecheck`` runs mypy (strict) on this file too: an annotation of the library
that loses precision (a ``Job[Any]`` where a ``Job[int]`` was) fails there, and so does
a wrong call that the checker stops catching (its ``type: ignore`` becomes unused).
pytest runs the same calls, so each line is also a working use of the API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator
from typing import assert_type

import pytest

import pools

T = 30.0


def square(x: int) -> int:
    return x * x


async def asquare(x: int) -> int:
    return x * x


def test_a_job_has_the_type_of_what_its_function_returns() -> None:
    seen: list[int] = []

    def on_done(job: pools.Job[int]) -> None:  # a callback gets the job itself
        seen.append(job.result())

    with pools.create_pool("thread", workers=2) as pool:
        assert_type(pool, pools.Pool)
        job = pool.submit(square, 3, priority=1, timeout=T, retry=pools.Retry(attempts=2))
        assert_type(job, pools.Job[int])
        assert_type(job.result(T), int)
        job.add_done_callback(on_done)
        for done in concurrent.futures.as_completed([job], T):  # a Job is a Future to the stubs too
            assert_type(done.result(), int)
        results = pool.map(square, [1, 2, 3])
        assert_type(results, Generator[int, None, None])
        assert (job.result(T), list(results), seen) == (9, [1, 4, 9], [9])
        assert_type(pool.stats(), pools.PoolStats)
    assert_type(pool.shutdown(), pools.ShutdownReport)


def test_a_job_of_a_coroutine_function_has_the_type_of_what_the_coroutine_returns() -> None:
    async def main() -> int:
        async with pools.create_pool("asyncio", workers=2) as pool:
            job = await pool.asubmit(asquare, 4)
            assert_type(job, pools.Job[int])
            value = await job
            assert_type(value, int)
            assert_type(await pool.submit(asquare, 5), int)
            return value

    assert asyncio.run(main()) == 16


def test_arguments_are_checked_against_the_function() -> None:
    with pools.create_pool("thread", workers=1) as pool:
        with pytest.raises(TypeError):
            pool.submit(square, "3").result(T)  # type: ignore[arg-type]  # a str where square takes an int
        with pytest.raises(TypeError):
            pool.submit(square).result(T)  # type: ignore[arg-type,call-arg]  # square takes one argument


def test_the_job_context_is_typed() -> None:
    def deadline_left() -> float | None:
        ctx = pools.current_context()
        assert_type(ctx, pools.JobContext)
        ctx.check()
        return ctx.remaining()

    with pools.create_pool("thread", workers=1) as pool:
        left = pool.submit(deadline_left, timeout=T).result(T)
        assert_type(left, float | None)
        assert left is not None and 0 < left <= T
