"""What only the thread backend does: contextvars, abandoned threads."""

import contextvars
import threading

import pytest

import pools
from pools.testing import jobs
from pools.testing.jobs import Gate

T = 30.0
request_id = contextvars.ContextVar("request_id", default=None)


def test_submitters_contextvars_reach_the_job(make_pool):
    pool = make_pool("thread", workers=2)
    token = request_id.set("req-42")
    try:
        job = pool.submit(request_id.get)
    finally:
        request_id.reset(token)
    assert job.result(T) == "req-42"
    assert pool.submit(request_id.get).result(T) is None  # captured at submit, not later


def test_a_job_runs_in_a_copy_of_the_submitters_context(make_pool):
    pool = make_pool("thread", workers=1)

    def set_and_get():
        request_id.set("set-in-job")
        return request_id.get()

    assert pool.submit(set_and_get).result(T) == "set-in-job"
    assert request_id.get() is None


def test_a_job_that_ignores_its_context_is_abandoned_not_waited_for(make_pool):
    pool = make_pool("thread", workers=1)
    with Gate() as gate:
        stubborn = pool.submit(gate.wait, timeout=0.05)  # never looks at its context
        with pytest.raises(pools.JobTimeout):
            stubborn.result(T)
        s = pool.stats()
        assert (s.abandoned, s.timed_out, s.busy) == (1, 1, 0)
        # the replacement thread keeps the pool at full strength
        assert pool.submit(threading.current_thread).result(T).name.startswith(pool.name)
        gate.open()  # the function returns: its thread leaves
        report = pool.shutdown(timeout=T)
    assert report.abandoned_threads == 0 and pool.stats().abandoned == 0


def test_shutdown_reports_threads_it_could_not_stop(make_pool):
    pool = make_pool("thread", workers=1)
    gate = Gate()
    started = threading.Event()

    def stubborn():
        started.set()
        gate.wait()

    pool.submit(stubborn)
    assert started.wait(T)
    report = pool.shutdown(timeout=0)
    try:
        assert report.killed and report.abandoned_threads == 1
    finally:
        gate.close()  # let it end, so the leak check passes


def test_check_raises_once_cancelled(make_pool):
    pool = make_pool("thread", workers=1)
    seen = []
    started = threading.Event()

    def cooperative():
        ctx = pools.current_context()
        started.set()
        ctx.wait()
        try:
            ctx.check()
        except pools.JobCancelled as exc:
            seen.append(exc.job_id)
            raise

    job = pool.submit(cooperative)
    assert started.wait(T)
    assert job.cancel()
    pool.shutdown(timeout=T)
    assert seen == [job.job_id]


def test_shutdown_deadline_with_jobs_failing_into_retries(make_pool):
    # a running attempt may fail into a retry between shutdown's looks: none may be left
    for _ in range(20):
        pool = make_pool("thread", workers=4, queue_size=50)
        retry = pools.Retry(attempts=5, backoff=0.001)
        js = [pool.submit(jobs.fail_until, 99, retry=retry) for _ in range(40)]
        pool.shutdown(timeout=0.001)
        assert all(j.done() for j in js)
        s = pool.stats()
        assert s.conserved() and (s.retrying, s.queued, s.busy) == (0, 0, 0)


def test_a_finished_job_with_a_timeout_is_not_kept_alive_until_its_deadline(make_pool):
    import concurrent.futures
    import gc
    import weakref

    pool = make_pool("thread", workers=2, queue_size=3000)
    submitted = [pool.submit(jobs.echo, i, timeout=3600) for i in range(2100)]
    concurrent.futures.wait(submitted, timeout=30)
    refs = [weakref.ref(j) for j in submitted]
    del submitted
    gc.collect()
    assert sum(r() is not None for r in refs) == 0
    # The emptied timer entries were dropped from the heap once they were most of it.
    assert len(pool._timer._heap) < 2100


def test_timer_cancel_drops_the_callback_and_skips_it():
    from pools._timer import Timer

    fired, busy, release = [], threading.Event(), threading.Event()
    timer = Timer("test-timer")
    try:
        # Hold the timer thread in a callback, so the next timer is due but cannot run yet.
        timer.call_later(0, lambda: (busy.set(), release.wait(10)))
        assert busy.wait(10)
        gone = timer.call_later(0, fired.append, "cancelled")
        timer.cancel(gone)
        timer.cancel(gone)  # twice is fine
        assert gone[2] is None and gone[3] is None
        done = threading.Event()
        timer.call_later(0, done.set)
        release.set()
        assert done.wait(10)
        assert fired == []
    finally:
        release.set()
        assert timer.stop(10)


def test_deadline_watch_fires_each_expired_deadline_once_and_never_a_disarmed_one():
    import time

    from pools._timer import DeadlineWatch, Timer

    fired, done = [], threading.Event()
    timer = Timer("test-watch")

    def expired(name):
        fired.append(name)
        if name == "last":
            done.set()

    watch = DeadlineWatch(timer, expired)
    busy, release = threading.Event(), threading.Event()
    try:
        # The timer thread is held in a callback while the deadlines are armed, so
        # none can fire early however slowly this thread runs: "gone" is disarmed
        # before any sweep could see it, and the rest are all due once it is released.
        timer.call_later(0, lambda: (busy.set(), release.wait(10)))
        assert busy.wait(10)
        now = time.monotonic()
        watch.arm("late", now + 0.003, "late")
        watch.arm("early", now + 0.001, "early")  # earlier: supersedes the armed sweep
        watch.arm("gone", now + 0.002, "gone")
        watch.disarm("gone")  # its job ended in time
        watch.arm("last", now + 0.004, "last")
        release.set()
        assert done.wait(10)
        assert fired == ["early", "late", "last"]
        assert len(timer._heap) <= 1  # no chain of sweeps left behind
    finally:
        release.set()
        assert timer.stop(10)


def test_deadline_watch_keeps_one_sweep_per_time_and_survives_a_failing_callback():
    import time

    from pools._timer import DeadlineWatch, Timer

    fired, done, errors = [], threading.Event(), []
    timer = Timer("test-watch-2")

    def expired(name):
        if name == "boom":
            raise RuntimeError("a failing expiry")
        fired.append(name)
        if name == "after":
            done.set()

    old_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_type)
    watch = DeadlineWatch(timer, expired)
    try:
        now = time.monotonic()
        watch.arm("long", now + 3600, "long")
        for i in range(200):  # short jobs that end in time, one after another
            # each earlier than the last, and all far enough off (60 s and more) that
            # none is due before its disarm however slowly this loop runs
            watch.arm(i, now + 60 + 0.01 * (200 - i), i)
            watch.disarm(i)
        # Whatever sweeps those arms left, none is a second one for the long deadline.
        with timer._cv:
            at_long = [e for e in timer._heap if e[2] is not None and e[0] == now + 3600]
        assert len(at_long) == 1
        soon = time.monotonic() + 0.05
        watch.arm("boom", soon, "boom")
        watch.arm("after", soon, "after")  # same sweep, after the failing one
        assert done.wait(10)
        assert fired == ["after"] and errors == [RuntimeError]
    finally:
        threading.excepthook = old_hook
        assert timer.stop(10)
