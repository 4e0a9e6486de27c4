"""What only the asyncio backend does: its loop, no thread hop, refusing to block it."""

import asyncio
import concurrent.futures
import sys
import threading

import pytest

import pools
from pools.testing import jobs

T = 30.0


async def where():
    return threading.get_ident(), asyncio.get_running_loop()


async def blocking_submit_inside(pool):
    return pool.submit(jobs.aecho, 1)


def test_started_in_a_coroutine_it_runs_on_that_loop(make_pool):
    pool = make_pool("asyncio", workers=4)

    async def main():
        async with pool:
            job = pool.submit(where)  # from the loop itself: no thread hop
            ident, loop = await job
            assert ident == threading.get_ident() and loop is asyncio.get_running_loop()
            assert pool.impl.loop is loop
            results = await asyncio.gather(*(pool.submit(jobs.aecho, i) for i in range(200)))
            assert results == list(range(200))

    asyncio.run(main())
    assert pool.stats().succeeded == 201


def test_started_from_sync_code_it_has_its_own_loop_thread(make_pool):
    pool = make_pool("asyncio", workers=2)
    ident, loop = pool.submit(where).result(T)
    assert ident != threading.get_ident()
    assert not loop.is_closed()
    pool.shutdown()
    assert loop.is_closed()


def test_blocking_calls_on_its_own_loop_are_refused_with_the_fix(make_pool):
    pool = make_pool("asyncio", workers=1, queue_size=0)

    async def main():
        async with pool:
            with pytest.raises(pools.PoolError, match="ashutdown"):
                pool.shutdown()
            with jobs.Gate() as gate, jobs.Latch() as latch:
                pool.submit(jobs.ahold, gate, latch)
                await asyncio.to_thread(latch.wait, 1, T)
                with pytest.raises(pools.PoolError, match="asubmit"):
                    pool.submit(jobs.aecho, 1)  # full, and blocking would stall the loop

    asyncio.run(main())


def test_plain_function_is_refused_with_the_fix(make_pool):
    pool = make_pool("asyncio", workers=1)
    with pytest.raises(pools.InvalidCallable, match="to_thread"):
        pool.submit(print, "x")


def test_loop_ending_under_the_pool_cancels_its_jobs(make_pool):
    pool = make_pool("asyncio", workers=2)
    held = []

    async def main():
        pool.start()
        held.append(pool.submit(jobs.auntil_stopped))
        await asyncio.sleep(0)  # the job starts; then asyncio.run ends and cancels every task

    asyncio.run(main())
    assert held[0].cancelled()
    report = pool.shutdown(timeout=T)
    assert report.complete and pool.stats().cancelled == 1


async def cancels_itself():
    fut = asyncio.get_running_loop().create_future()
    fut.cancel()
    await fut  # raises CancelledError inside the job


async def slow_to_cancel(latch):
    latch.arrive()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(0.2)  # cleanup that takes a while
        raise


async def interrupts():
    raise KeyboardInterrupt


def test_a_job_that_raises_cancelled_error_cancels_only_itself(make_pool):
    pool = make_pool("asyncio", workers=2)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        other = pool.submit(jobs.ahold, gate, latch, "other")
        assert latch.wait(1, T)
        job = pool.submit(cancels_itself)
        with pytest.raises(concurrent.futures.CancelledError):
            job.result(T)
        assert job.cancelled() and other.status == "running"
        gate.open()
        assert other.result(T) == "other"
    assert pool.submit(jobs.aecho, 1).result(T) == 1  # still open


def test_a_job_slow_to_honour_cancel_does_not_starve_new_jobs(make_pool):
    pool = make_pool("asyncio", workers=2)
    with jobs.Latch() as latch:
        slow = pool.submit(slow_to_cancel, latch)
        assert latch.wait(1, T)
        assert slow.cancel()
        # the cancelled job still unwinds on its consumer; another consumer serves this
        assert pool.submit(jobs.aecho, "quick").result(T) == "quick"


def test_keyboard_interrupt_in_a_job_fails_only_that_job_on_a_private_loop(make_pool):
    pool = make_pool("asyncio", workers=1)
    with pytest.raises(KeyboardInterrupt):
        pool.submit(interrupts).result(T)
    assert pool.submit(jobs.aecho, "alive").result(T) == "alive"


def test_a_retry_pending_when_the_loop_ends_is_cancelled(make_pool):
    pool = make_pool("asyncio", workers=1)
    held = []

    async def main():
        pool.start()
        held.append(
            pool.submit(jobs.afail_until, 2, retry=pools.Retry(attempts=2, backoff=600, max_backoff=600, jitter=False))
        )
        while held[0].status != "retrying":
            await asyncio.sleep(0)

    asyncio.run(main())
    assert held[0].cancelled()
    with pytest.raises(pools.PoolClosed, match=r"asyncio\.run"):
        pool.submit(jobs.aecho, 1)


def test_shutdown_without_waiting_from_a_job_while_draining(make_pool):
    pool = make_pool("asyncio", workers=2)

    async def closes_its_pool():
        return pool.shutdown(wait=False).complete

    async def main():
        async with pool:
            with jobs.Gate() as gate, jobs.Latch() as latch:
                held = pool.submit(jobs.ahold, gate, latch, "held")
                await asyncio.to_thread(latch.wait, 1, T)
                closer = pool.submit(closes_its_pool)
                draining = asyncio.ensure_future(pool.ashutdown(timeout=T))
                assert await closer is False  # returned at once, although a drain is under way
                gate.open()
                assert await held == "held"
                return await draining

    report = asyncio.run(asyncio.wait_for(main(), T))
    assert report.succeeded == 2


def test_a_timed_out_attempt_is_stopped_even_when_its_retry_already_runs_elsewhere():
    # The timeout is settled on the timer thread and the attempt's task cancelled on
    # the loop; if the loop is stalled meanwhile, the retry can start on another
    # consumer first. The cancel must still reach the consumer of the timed-out attempt.
    import time

    running = {"J": 0}

    async def forever(tag):
        running[tag] += 1
        try:
            await asyncio.Event().wait()
        finally:
            running[tag] -= 1

    async def main():
        async with pools.create_pool("asyncio", workers=3) as pool:
            go, started = asyncio.Event(), asyncio.Semaphore(0)

            async def staller():
                started.release()
                await go.wait()
                time.sleep(0.5)  # stalls the loop past J's deadline and its retry's back-off

            async def quick():
                started.release()
                await go.wait()  # its next step is queued right behind the staller's

            job = await pool.asubmit(
                forever, "J", timeout=0.2, retry=pools.Retry(attempts=2, backoff=0.0, jitter=False)
            )
            await pool.asubmit(staller)
            await pool.asubmit(quick)
            await started.acquire()
            await started.acquire()
            go.set()
            with pytest.raises(pools.JobTimeout):
                await job
            assert job.attempt == 2
            deadline = time.monotonic() + 10
            while running["J"] and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert running["J"] == 0, "an attempt of the timed-out job is still running"
            assert pool.impl._busy_consumers == 0

    asyncio.run(main())


def test_a_job_that_cancels_its_own_task_is_cancelled_and_the_pool_goes_on():
    async def cancels_itself():
        asyncio.current_task().cancel()
        await asyncio.sleep(3600)

    async def echo(x):
        return x

    async def main():
        async with pools.create_pool("asyncio", workers=2) as pool:
            job = await pool.asubmit(cancels_itself)
            with pytest.raises(asyncio.CancelledError):
                await job
            assert job.status == "cancelled"
            assert await (await pool.asubmit(echo, 7)) == 7  # not taken for the loop ending
            assert pool.stats().cancelled == 1 and not pool.closed

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager task factories came with Python 3.12")
def test_consumers_started_eagerly_settle_their_jobs_and_leave_no_entry():
    # Under an eager task factory a consumer runs inside create_task, before the pool
    # could note which task it is: it once ran without its task (a job that raised
    # CancelledError then hung its pool) and left finished tasks in the pool's table.
    async def noop():
        return 1

    async def cancels_itself():
        raise asyncio.CancelledError

    async def main():
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        async with pools.create_pool("asyncio", workers=4) as pool:
            done = [await pool.asubmit(noop) for _ in range(50)]
            assert [await job for job in done] == [1] * 50
            assert not any(task.done() for task in pool.impl._consumers)
            job = await pool.asubmit(cancels_itself)
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(T):
                    await job
            assert job.status == "cancelled"

    asyncio.run(main())


# -- a job submitted on its pool's own loop is an asyncio future of that loop


def test_a_job_submitted_on_its_loop_is_an_asyncio_future_that_asyncio_takes_as_it_is(make_pool):
    pool = make_pool("asyncio", workers=2)

    async def main():
        loop = asyncio.get_running_loop()
        async with pool:
            job = pool.submit(jobs.aecho, 1)
            assert asyncio.isfuture(job) and job.get_loop() is loop
            assert asyncio.ensure_future(job) is job  # no Task around it
            assert asyncio.wrap_future(job) is job
            assert await job == 1
            # gather, wait, wait_for, shield, as_completed: with jobs as they are
            assert await asyncio.gather(*(pool.submit(jobs.aecho, i) for i in range(100))) == list(range(100))
            done, pending = await asyncio.wait([pool.submit(jobs.aecho, i) for i in range(5)])
            assert sorted(j.result() for j in done) == list(range(5)) and not pending
            assert await asyncio.wait_for(pool.submit(jobs.aecho, 7), T) == 7
            assert await asyncio.shield(pool.submit(jobs.aecho, 8)) == 8
            got = [await f for f in asyncio.as_completed([pool.submit(jobs.aecho, i) for i in range(3)])]
            assert sorted(got) == [0, 1, 2]
            # children that ended before gather() was called (it counts on callbacks
            # being scheduled, not called at once)
            ended = [pool.submit(jobs.aecho, i) for i in range(3)]
            await asyncio.wait(ended)
            assert await asyncio.gather(*ended) == [0, 1, 2]
            # a job from another thread is an ordinary concurrent future
            other = await asyncio.to_thread(pool.submit, jobs.aecho, 9)
            assert not asyncio.isfuture(other) and await other == 9

    asyncio.run(main())


def test_an_asyncio_future_job_runs_its_callbacks_on_its_loop_even_when_a_timeout_ends_it(make_pool):
    pool = make_pool("asyncio", workers=1)

    async def main():
        loop = asyncio.get_running_loop()
        async with pool:
            with jobs.Gate() as gate:
                job = pool.submit(jobs.ahold, gate, timeout=0.05)  # ended by the timer thread
                seen = loop.create_future()
                job.add_done_callback(lambda j: seen.set_result((threading.get_ident(), j.status)))
                ident, status = await asyncio.wait_for(seen, T)
                assert ident == threading.get_ident() and status is pools.JobStatus.TIMED_OUT
                with pytest.raises(pools.JobTimeout):
                    await asyncio.gather(job)
                # added after the end: scheduled on the loop, in order, never called at once
                order = []
                job.add_done_callback(lambda j: order.append(1))
                job.add_done_callback(lambda j: order.append(2))
                assert order == []
                await asyncio.sleep(0)
                assert order == [1, 2]

    asyncio.run(main())


def test_gather_cancelled_cancels_its_asyncio_future_jobs_and_remove_done_callback_works(make_pool):
    pool = make_pool("asyncio", workers=1)

    async def main():
        async with pool:
            with jobs.Gate() as gate:
                running = pool.submit(jobs.ahold, gate)
                waiting = pool.submit(jobs.aecho, 1)
                calls = []

                def cb(j):
                    calls.append(j)

                waiting.add_done_callback(cb)
                waiting.add_done_callback(cb)
                assert waiting.remove_done_callback(cb) == 2 and waiting.remove_done_callback(cb) == 0
                outer = asyncio.gather(running, waiting)
                outer.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await outer
                assert running.cancelled() and waiting.cancelled() and calls == []
                (res,) = await asyncio.gather(running, return_exceptions=True)
                assert isinstance(res, asyncio.CancelledError)

    asyncio.run(main())
    assert pool.stats().cancelled == 2


async def _forever():
    await asyncio.Event().wait()


def test_cancelling_a_task_that_gathers_asyncio_future_jobs_cancels_it(make_pool):
    # gather's callback run inside a child's cancel() would end the gathering future
    # with the children's errors before it knew it was cancelled: the task went on.
    pool = make_pool("asyncio", workers=2)

    async def started_then_forever(started):
        started.set()
        await _forever()

    async def gathers(started):
        return await asyncio.gather(pool.submit(started_then_forever, started), return_exceptions=True)

    async def main():
        async with pool:
            started = asyncio.Event()
            task = asyncio.create_task(gathers(started))
            await started.wait()  # the job runs, the task waits in gather
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await asyncio.gather(pool.submit(_forever), return_exceptions=True)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.submit(_forever), 0.05)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.gather(pool.submit(_forever), return_exceptions=True), 0.05)

    asyncio.run(main())
    assert pool.stats().cancelled == 4


def test_a_cancelled_asyncio_future_job_raises_both_cancelled_errors(make_pool):
    pool = make_pool("asyncio", workers=1)

    async def main():
        async with pool:
            job = pool.submit(_forever)
            assert job.cancel()
            for read in (job.result, job.exception):
                with pytest.raises(pools.LoopJobCancelled) as caught:
                    read()
                assert isinstance(caught.value, asyncio.CancelledError)
                assert isinstance(caught.value, concurrent.futures.CancelledError)
            for f in asyncio.as_completed([job]):
                with pytest.raises(asyncio.CancelledError):
                    await f

    asyncio.run(main())


def test_an_asyncio_future_job_schedules_its_callbacks_and_one_may_remove_itself(make_pool):
    pool = make_pool("asyncio", workers=1)
    called = []

    async def main():
        async with pool:
            job = pool.submit(jobs.aecho, 1)

            def once(j):
                called.append("once")
                j.remove_done_callback(once)

            job.add_done_callback(once)
            job.add_done_callback(lambda j: called.append("second"))
            job.add_done_callback(lambda j: called.append("third"))
            assert await job == 1
            for _ in range(3):
                await asyncio.sleep(0)

    asyncio.run(main())
    assert called == ["once", "second", "third"]


def test_an_asyncio_future_job_ended_while_its_loop_is_stopped_runs_its_callbacks_in_the_caller(make_pool):
    pool = make_pool("asyncio", workers=1)
    called = []
    loop = asyncio.new_event_loop()

    async def submit():
        pool.start()
        job = pool.submit(_forever)
        job.add_done_callback(lambda j: called.append(threading.get_ident()))
        return job

    try:
        job = loop.run_until_complete(submit())  # the loop now stopped, not closed
        assert job.cancel()
        assert called == [threading.get_ident()]  # nothing would run them on that loop
    finally:
        loop.run_until_complete(pool.ashutdown(timeout=T, cancel_pending=True))
        loop.close()
