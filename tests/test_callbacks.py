"""Done-callbacks: user code that never holds up the threads that deliver deadlines
and results (the conformance suite checks the timer's side on every backend)."""

import asyncio
import logging
import threading

import pytest

import pools
from pools.testing import jobs
from pools.testing.jobs import Gate, job_for

T = 30.0

# Backends whose results a pool's own thread delivers (the process manager, the Dask
# loop): there a blocking callback of one job held up every other job's result.
MANAGED = [b for b in ("process", "dask") if b in pools.available_backends()]


@pytest.mark.parametrize("backend", MANAGED)
def test_a_blocking_callback_on_a_result_delays_no_other_job(make_pool, backend):
    pool = make_pool(backend, workers=2)
    entered, release = threading.Event(), threading.Event()

    def blocking(_job):
        entered.set()
        release.wait(T)

    with Gate() as gate:
        try:
            first = pool.submit(jobs.echo, "first")
            first.add_done_callback(blocking)
            assert entered.wait(T)
            assert first.result(0) == "first"  # resolved before its callbacks ran
            timed = pool.submit(jobs.hold, gate, timeout=0.3)
            with pytest.raises(pools.JobTimeout):
                timed.result(T)
            assert [pool.submit(jobs.echo, i).result(T) for i in range(3)] == [0, 1, 2]
            assert not release.is_set()
        finally:
            release.set()
            gate.open()


def test_callbacks_of_timer_settled_jobs_run_once_in_order_and_errors_are_logged(make_pool, caplog):
    # Each job's callbacks run once each, in the order they were added, and one that
    # raises is logged and lost (concurrent.futures' rules), on the callback thread.
    pool = make_pool("thread", workers=4)
    seen: list[tuple[int, str]] = []
    done = threading.Event()
    with Gate() as gate:
        held = [pool.submit(jobs.hold, gate, timeout=0.05 * (i + 1)) for i in range(4)]
        for job in held:
            job.add_done_callback(lambda j: seen.append((j.job_id, "a")))
            job.add_done_callback(lambda j: 1 / 0)  # logged and lost, as in concurrent.futures
            job.add_done_callback(lambda j: seen.append((j.job_id, "b")))
        held[-1].add_done_callback(lambda j: done.set())
        with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
            assert done.wait(T)
            gate.open()
            pool.shutdown(timeout=T)
    assert all(job.status == "timed_out" for job in held)
    for job in held:
        assert [tag for job_id, tag in seen if job_id == job.job_id] == ["a", "b"]
    assert len(seen) == 8
    assert sum("ZeroDivisionError" in r.exc_text for r in caplog.records if r.exc_text) == 4


def test_a_callback_added_after_the_end_runs_at_once_in_the_caller(make_pool):
    pool = make_pool("thread", workers=1)
    job = pool.submit(jobs.echo, 1)
    job.result(T)
    where: list[threading.Thread] = []
    job.add_done_callback(lambda j: where.append(threading.current_thread()))
    assert where == [threading.current_thread()]


@pytest.mark.parametrize("backend", ["thread", *MANAGED])
def test_a_callback_may_shut_its_own_pool_down(make_pool, backend):
    # It runs on the pool's callback thread, which shutdown must not wait for.
    pool = make_pool(backend, workers=1)
    reports: list[pools.ShutdownReport] = []
    with Gate() as gate:
        job = pool.submit(job_for(pool, jobs.hold), gate, timeout=0.05)
        job.add_done_callback(lambda j: reports.append(pool.shutdown(timeout=T)))
        with pytest.raises(pools.JobTimeout):
            job.result(T)
        gate.open()
        final = pool.shutdown(timeout=T)
    assert final.timed_out == 1 and reports and reports[0].timed_out == 1


@pytest.mark.parametrize("backend", ["thread", *MANAGED])
def test_a_callback_run_by_the_shutdown_may_call_shutdown(make_pool, backend):
    # Cancelling a running job runs its callbacks in the thread that cancels: here the
    # shutdown's own thread, which holds the shutdown. A blocking shutdown() there
    # waited for itself for ever.
    pool = make_pool(backend, workers=1)
    inner: list[pools.ShutdownReport] = []
    outer: list[pools.ShutdownReport] = []
    with Gate() as gate:
        latch = jobs.Latch()
        job = pool.submit(job_for(pool, jobs.hold), gate, latch)
        assert latch.wait(1, T)
        job.add_done_callback(lambda j: inner.append(pool.shutdown()))
        closer = threading.Thread(target=lambda: outer.append(pool.shutdown(timeout=0)), daemon=True)
        closer.start()
        closer.join(T)
        gate.open()
        latch.close()
    assert not closer.is_alive(), "a callback calling shutdown() from inside the shutdown hung it"
    assert job.cancelled()
    assert inner and not inner[0].complete  # the shutdown it was called from was not over
    assert outer and outer[0].complete and outer[0].killed == (job.job_id,)


def test_a_callback_may_shut_the_pool_down_while_others_wait_behind_it(make_pool):
    # The callbacks queued behind it can only run on the same thread, after it:
    # its shutdown() must not wait for them.
    pool = make_pool("thread", workers=2)
    entered, go, done = threading.Event(), threading.Event(), threading.Event()
    reports: list[pools.ShutdownReport] = []

    def first(_job):
        entered.set()
        go.wait(T)
        reports.append(pool.shutdown())  # no timeout: it would wait for ever

    with Gate() as gate:
        a = pool.submit(jobs.hold, gate, timeout=0.05)
        a.add_done_callback(first)
        assert entered.wait(T)
        b = pool.submit(jobs.hold, gate, timeout=0.05)
        b.add_done_callback(lambda j: done.set())
        with pytest.raises(pools.JobTimeout):
            b.result(T)  # settled: its callback now waits behind `first`
        gate.open()
        go.set()
        assert done.wait(T), "the callback queued behind the one that shut the pool down never ran"
    assert reports and reports[0].timed_out == 2


def test_asyncio_wrap_future_wakes_at_the_deadline_while_a_callback_blocks(make_pool):
    # wrap_future's own callback only schedules the awaiting loop: it runs where the
    # job was settled, not behind user callbacks on the callback thread.
    pool = make_pool("thread", workers=3)
    entered, release = threading.Event(), threading.Event()

    def blocking(_job):
        entered.set()
        release.wait(T)

    async def main(gate):
        first = pool.submit(jobs.hold, gate, timeout=0.05)
        first.add_done_callback(blocking)
        await asyncio.to_thread(entered.wait, T)
        second = pool.submit(jobs.hold, gate, timeout=0.2)
        with pytest.raises(pools.JobTimeout):  # well before the blocking callback gives up (T)
            await asyncio.wait_for(asyncio.wrap_future(second), T / 3)
        return release.is_set()

    with Gate() as gate:
        try:
            assert asyncio.run(main(gate)) is False  # woken while the callback still blocked
        finally:
            release.set()
            gate.open()


def test_a_callback_added_after_the_end_runs_after_the_earlier_ones(make_pool):
    pool = make_pool("thread", workers=1)
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def first(_job):
        entered.set()
        release.wait(T)
        order.append("first")

    late_ran = threading.Event()
    with Gate() as gate:
        job = pool.submit(jobs.hold, gate, timeout=0.05)
        job.add_done_callback(first)
        assert entered.wait(T) and job.done()
        job.add_done_callback(lambda j: (order.append("late"), late_ran.set()))  # the job ended already
        assert order == []  # not run at once, ahead of the one still running
        release.set()
        assert late_ran.wait(T)
        gate.open()
    assert order == ["first", "late"]
