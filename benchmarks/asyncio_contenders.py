"""What an asyncio user would pick instead of the pool, on the caller's own loop, for
``n`` no-op jobs, ``workers`` at a time: the suite (``test_bench_pools``) and the
script (``noop_ratios``) time these same two."""

from __future__ import annotations

import asyncio


async def anoop() -> None:
    return None  # the job each side runs, as ours runs the noop job type


async def gather_semaphore(n: int, workers: int) -> list[None]:
    """``asyncio.gather`` of a coroutine a job, ``workers`` at a time behind a Semaphore."""
    sem = asyncio.Semaphore(workers)

    async def one() -> None:
        async with sem:
            await anoop()

    return await asyncio.gather(*(one() for _ in range(n)))


async def taskgroup_of_consumers(n: int, workers: int) -> list[None]:
    """The canonical asyncio worker pool: ``workers`` consumer tasks on a queue, each
    job's result set on a loop future that the caller gathers."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[asyncio.Future[None] | None] = asyncio.Queue()
    results = [loop.create_future() for _ in range(n)]

    async def consume() -> None:
        while (item := await queue.get()) is not None:
            await anoop()
            item.set_result(None)

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(consume())
        for fut in results:
            queue.put_nowait(fut)
        for _ in range(workers):
            queue.put_nowait(None)
        return await asyncio.gather(*results)
