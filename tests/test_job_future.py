"""A Job is a concurrent.futures.Future whose condition, waiter list and callback
list are made on first use (pools/_future.py). These tests hold it to Future's
contract on both paths: waited on while pending (a real condition), and looked at
only after it ended (no condition at all); and they fail, naming the attribute, if a
Python release changes the Future internals that this relies on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures._base as futures_base
import dis
import inspect
import threading
import weakref

import pytest

import pools
from pools._future import FUTURE_INTERNALS, LazyFuture
from pools._job import Job


def _private_names(*functions):
    """The private attribute names that ``functions`` read or write on any object."""
    names = set()
    for fn in functions:
        for ins in dis.get_instructions(fn):
            if ins.opname in ("LOAD_ATTR", "STORE_ATTR", "LOAD_METHOD", "DELETE_ATTR") and ins.argval.startswith("_"):
                names.add(ins.argval)
    return names - {"__class__", "__name__", "_Future__get_result"}  # the last: Future's own, not replaced


def test_the_future_internals_that_lazy_future_replaces_are_still_those_of_future():
    # Future.__init__ is replaced, not called: a new attribute there would be missing.
    attributes = set(FUTURE_INTERNALS["Future attributes"])
    made = set(vars(concurrent.futures.Future()))
    assert made <= attributes, f"Future.__init__ now sets {sorted(made - attributes)}: LazyFuture does not make them"
    assert attributes <= made, f"Future.__init__ no longer sets {sorted(attributes - made)}: update LazyFuture"
    # Every private name that Future's methods and the module's wait()/as_completed()
    # use on a future must be one that LazyFuture provides.
    methods = [fn for fn in vars(concurrent.futures.Future).values() if inspect.isfunction(fn)]
    helpers = [
        futures_base.wait,
        futures_base.as_completed,
        futures_base._AcquireFutures.__enter__,
        futures_base._AcquireFutures.__exit__,
        futures_base._create_and_install_waiters,
        futures_base._yield_finished_futures,
    ]
    provided = attributes | set(FUTURE_INTERNALS["Future methods"])
    used = _private_names(*methods, *helpers)
    assert used <= provided, f"concurrent.futures now uses {sorted(used - provided)} on a future: LazyFuture lacks it"
    for name in provided:
        assert hasattr(LazyFuture(), name), f"LazyFuture has no {name}"
    for name in FUTURE_INTERNALS["concurrent.futures._base"]:
        assert hasattr(futures_base, name), f"concurrent.futures._base.{name} is gone"
    for name in FUTURE_INTERNALS["RLock methods"]:
        assert hasattr(threading.RLock(), name), f"threading.RLock().{name} is gone (the job condition's wait uses it)"


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


def test_an_ended_job_lets_go_of_its_done_callbacks():
    # They ran once and will never run again: a job kept after its end (a list of
    # results to come) must not keep them, nor what they hold, alive.
    class Callback:
        def __call__(self, job):
            ran.append(job)

    ran = []
    gate = threading.Event()
    with pools.create_pool("thread", workers=1) as pool:  # its threads joined on exit: no frame holds one
        job = pool.submit(gate.wait, 10)
        callback = Callback()
        ref = weakref.ref(callback)
        job.add_done_callback(callback)
        del callback
        kept = ran.append  # a second one, which this test still holds
        job.add_done_callback(kept)
        gate.set()
        assert job.result(timeout=10) is True
    assert ran == [job, job]
    assert ref() is None, "the ended job still holds its done-callback"
    assert job.remove_done_callback(kept) == 0  # nothing left to remove, as in asyncio
    late = []
    job.add_done_callback(late.append)  # ended: called at once
    assert late == [job]


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
