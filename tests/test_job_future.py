"""A Job is a concurrent.futures.Future whose condition, waiter list and callback
list are made on first use (pools/_base.py). These tests hold it to Future's
contract on both paths: waited on while pending (a real condition), and looked at
only after it ended (no condition at all)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

import pools
from pools._base import Job


def _ident(x):
    return x


def _boom():
    raise ValueError("boom")


@pytest.fixture
def pool():
    with pools.create_pool("thread", workers=2, queue_size=10_000) as p:
        yield p


def test_ended_job_answers_every_future_method_without_a_condition(pool):
    job = pool.submit(_ident, 7)
    while not job.done():  # spin on done(): the lock-free read must see the end
        pass
    assert job._cond is None  # nobody needed one
    assert job.result() == 7 and job.exception() is None
    assert not job.cancelled() and job.done()
    seen = []
    job.add_done_callback(seen.append)  # ended: called at once, in this thread
    assert seen == [job]
    done, not_done = concurrent.futures.wait([job], timeout=5)
    assert done == {job} and not not_done
    assert list(concurrent.futures.as_completed([job], timeout=5)) == [job]
    with pytest.raises(concurrent.futures.InvalidStateError):
        job.set_result(8)
    assert job.result() == 7


def test_failed_job_raises_its_error_and_keeps_the_job_id(pool):
    job = pool.submit(_boom)
    with pytest.raises(ValueError, match="boom") as info:
        job.result(timeout=5)
    assert info.value.job_id == job.job_id
    assert isinstance(job.exception(), ValueError)


def test_waiters_blocked_before_the_end_are_all_woken(pool):
    gate = threading.Event()
    job = pool.submit(gate.wait, 10)
    results, started = [], threading.Barrier(5)

    def waiter():
        started.wait(5)
        results.append(job.result(timeout=10))

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait(5)  # every waiter is about to block on the (real) condition
    waited = concurrent.futures.wait([job], timeout=0.01)
    assert not waited.done
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [True] * 4
    assert job._cond is not None


def test_callbacks_added_before_the_end_run_exactly_once(pool):
    gate = threading.Event()
    job = pool.submit(gate.wait, 10)
    calls = []
    for i in range(3):
        job.add_done_callback(lambda j, i=i: calls.append(i))
    gate.set()
    assert job.result(timeout=10) is True
    concurrent.futures.wait([job], timeout=5)
    assert sorted(calls) == [0, 1, 2]


def test_many_jobs_settle_while_other_threads_wait_on_them(pool):
    # Every job is waited on from another thread while the workers end it: each
    # waiter either sees it ended (no condition) or blocks and is woken.
    jobs = [pool.submit(_ident, i) for i in range(2000)]
    got = []

    def collect(part):
        got.extend(j.result(timeout=30) for j in part)

    threads = [threading.Thread(target=collect, args=(jobs[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    _done, not_done = concurrent.futures.wait(jobs, timeout=30)
    for t in threads:
        t.join(30)
    assert not not_done
    assert sorted(got) == list(range(2000))


def test_cancelled_job_reports_cancelled_everywhere(pool):
    gate = threading.Event()
    blockers = [pool.submit(gate.wait, 10) for _ in range(2)]
    job = pool.submit(_ident, 1)  # waits: both workers are held
    assert job.cancel()
    assert job.cancelled() and job.done()
    with pytest.raises(concurrent.futures.CancelledError):
        job.result(timeout=1)
    gate.set()
    assert [b.result(timeout=10) for b in blockers] == [True, True]


def test_await_from_another_loop_and_wrap_future_both_work(pool):
    async def main():
        direct = await pool.submit(_ident, 1)
        wrapped = await asyncio.wrap_future(pool.submit(_ident, 2))
        gathered = await asyncio.gather(*(pool.submit(_ident, i) for i in range(50)))
        return direct, wrapped, gathered

    assert asyncio.run(main()) == (1, 2, list(range(50)))


def test_cancelling_the_awaiting_task_cancels_the_job(pool):
    gate = threading.Event()

    async def main():
        job = pool.submit(gate.wait, 10)
        task = asyncio.ensure_future(_await(job))
        await asyncio.sleep(0)  # the task now awaits the job
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return job

    job = asyncio.run(main())
    gate.set()
    assert job.status == "cancelled" and job.cancelled()


async def _await(job: Job):
    return await job


def test_awaiting_a_failed_job_raises_its_error(pool):
    async def main():
        with pytest.raises(ValueError, match="boom"):
            await pool.submit(_boom)

    asyncio.run(main())


def test_asyncio_backend_jobs_awaited_on_their_own_loop():
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    async def main():
        async with pools.create_pool("asyncio", workers=4, queue_size=1000) as p:
            return await asyncio.gather(*(p.submit(double, i) for i in range(500)))

    assert asyncio.run(main()) == [2 * i for i in range(500)]


def test_result_with_a_timeout_on_a_pending_job_times_out_then_succeeds(pool):
    gate = threading.Event()
    job = pool.submit(gate.wait, 10)
    with pytest.raises(concurrent.futures.TimeoutError):
        job.result(timeout=0.01)
    with pytest.raises(concurrent.futures.TimeoutError):
        job.exception(timeout=0)
    assert job._cond._sleepers in (None, [])  # the timed-out sleepers took themselves off
    gate.set()
    assert job.result(timeout=10) is True
