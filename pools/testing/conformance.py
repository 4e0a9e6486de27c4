"""The conformance suite: the lifecycle semantics that every backend must honour.

Written once, run unchanged against every backend through the ``pool_backend``
fixture of the poolbench pytest plugin. Jobs come from :mod:`pools.testing.jobs`
in the form the backend runs (:func:`~pools.testing.jobs.job_for`); tests wait on
gates, latches and futures, never on sleeps. A semantics that a backend cannot
honour is skipped for it with the reason, from the backend's declared capabilities.

Use it for a new backend::

    class TestMine(PoolConformance):
        backends = ("mine",)
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import gc
import itertools
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .. import (
    InvalidArgument,
    InvalidCallable,
    JobTimeout,
    NoCurrentJob,
    Pool,
    PoolBroken,
    PoolClosed,
    PoolStats,
    QueueFull,
    Retry,
    WorkerCrashed,
    create_pool,
    current_context,
)
from .._registry import backend_class
from . import jobs
from .jobs import Gate, Latch, job_for

T = 30.0  # generous bound on any single wait: a hang fails instead of blocking
PADDING = 128 * 1024  # bytes: more than any backlog takes ahead (pools.remote.Backlog)

#: the ``make_pool`` fixture of the poolbench plugin
MakePool = Callable[..., Pool]


def _skip_unless_crash_safe(pool: Pool) -> None:
    pool.start()  # a backend may learn where it runs (a Dask cluster's workers) only then
    caps = pool.capabilities
    if not caps.survives_crashes:
        pytest.skip(caps.no_crash_recovery or f"the {pool.backend!r} backend does not survive a crashing job")


def _skip_unless_exit_status_reported(pool: Pool) -> None:
    if not pool.capabilities.reports_exit_status:
        pytest.skip(
            f"the {pool.backend!r} backend learns only that the worker under a job died (Dask's "
            "KilledWorker), not its exit code or signal, so WorkerCrashed cannot name them; and a "
            "MemoryError there is the job's own error, since it does not end the worker"
        )


def _skip_unless_lifecycle(backend: str, option: str) -> None:
    why = backend_class(backend).capabilities.why_not(option)
    if why is not None:
        pytest.skip(f"{option} does not apply to the {backend!r} backend: {why}")


def _eventually(condition: Callable[[], bool], timeout: float = T) -> bool:
    """Whether ``condition()`` holds within ``timeout``: for what only the passing of
    time brings about (a worker idle long enough exits), there is no event to wait on."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _append(items: list[str], item: str, called: threading.Semaphore, _job: object) -> None:
    items.append(item)  # list.append is atomic
    called.release()


class PoolConformance:
    """Every numbered point of the lifecycle contract, as tests."""

    backends: tuple[str, ...] | None = None  # None: every available backend
    #: seconds a job may take to end once it is stopped (its context cancelled, its
    #: process killed, its task cancelled) before the suite says it kept running
    stop_grace: float = jobs.STOP_GRACE

    @pytest.fixture(autouse=True)
    def _on_each_backend(self, pool_backend: str) -> str:
        """Puts ``pool_backend`` in every test's closure, so each runs per backend."""
        return pool_backend

    # ------------------------------------------------------ 1. bounded queue

    def test_reject_when_full(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=1, overflow="reject")
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        with Gate() as gate, Latch() as latch:
            a = pool.submit(hold, gate, latch, "a")
            assert latch.wait(1, T)
            b = pool.submit(hold, gate, None, "b")
            with pytest.raises(QueueFull) as info:
                pool.submit(echo, "c")
            assert "queue_size=1" in str(info.value)
            s = pool.stats()
            assert (s.busy, s.queued, s.rejected, s.submitted) == (1, 1, 1, 2)
            gate.open()
            assert (a.result(T), b.result(T)) == ("a", "b")

    def test_block_with_wait_bound_raises_queue_full(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=1, overflow="block")
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        with Gate() as gate, Latch() as latch:
            pool.submit(hold, gate, latch)
            assert latch.wait(1, T)
            pool.submit(echo, "queued")
            with pytest.raises(QueueFull, match=r"wait=0\.05"):
                pool.submit(echo, "late", wait=0.05)
            assert pool.stats().rejected == 1
            assert pool.stats().submitted == 2

    def test_block_waits_for_room(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=1, overflow="block")
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        got: list[Any] = []
        with Gate() as gate, Latch() as latch:
            pool.submit(hold, gate, latch)
            assert latch.wait(1, T)
            pool.submit(echo, "queued")
            submitter = threading.Thread(target=lambda: got.append(pool.submit(echo, "blocked")))
            submitter.start()
            submitter.join(0.1)
            assert submitter.is_alive(), "submit returned although the queue was full"
            assert pool.stats().submitted == 2
            gate.open()
            submitter.join(T)
            assert not submitter.is_alive()
        assert got[0].result(T) == "blocked"

    def test_queue_size_zero_is_a_direct_hand_off(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=0, overflow="reject")
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        with Gate() as gate, Latch() as latch:
            a = pool.submit(hold, gate, latch, "a")  # a worker is idle: handed over
            assert latch.wait(1, T)
            with pytest.raises(QueueFull):
                pool.submit(echo, "b")  # no idle worker, no buffer
            gate.open()
            assert a.result(T) == "a"
        assert pool.submit(echo, "c").result(T) == "c"

    def test_map_is_lazy_ordered_and_bounded(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=2, queue_size=2)
        echo = job_for(pool, jobs.echo)
        pulled = itertools.count()
        results = pool.map(echo, (next(pulled) for _ in itertools.repeat(None)))  # endless input
        assert list(itertools.islice(results, 25)) == list(range(25))
        results.close()
        # items taken from the input: what was yielded, and a bounded amount in flight
        # (a job each, or batches of a few where jobs cross to another process)
        taken = next(pulled)
        assert taken <= 25 + pool.workers + pool.queue_size or (
            pool.capabilities.batches_map and pool.stats().submitted <= 25 + pool.workers + pool.queue_size
        ), (taken, pool.stats())
        assert list(pool.map(job_for(pool, jobs.add), [1, 2, 3], [10, 20, 30])) == [11, 22, 33]

    def test_map_raises_the_first_failure_and_cancels_the_rest(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=4)
        fail_or_hold = job_for(pool, jobs.fail_or_hold)
        with Gate() as gate:
            # "first" fails at once; the others cannot end before the gate opens, so
            # only map's own cancel can have ended them by the time it raises.
            with pytest.raises(jobs.JobFailure, match="first"):
                list(pool.map(fail_or_hold, ["first", "second", "third"], [None, gate, gate]))
            s = pool.stats()
            assert (s.submitted, s.failed, s.cancelled, s.succeeded) == (3, 1, 2, 0), s

    # ------------------------------------------------------ 2. priorities

    def test_higher_priority_first_fifo_among_equals(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=10)
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        order: list[str] = []
        # Backends that send small waiting jobs ahead to a busy worker (process, dask)
        # could send "a" before "e" is even submitted; jobs larger than any backlog's
        # byte cap are never sent ahead, so the order is the queue's whatever the timing.
        big = b"x" * PADDING
        with Gate() as gate, Latch() as latch:
            blocker = pool.submit(hold, gate, latch)
            assert latch.wait(1, T)
            called = threading.Semaphore(0)
            names = [(0, "a"), (5, "b"), (1, "c"), (5, "d"), (9, "e"), (0, "f"), (-3, "g")]
            for priority, name in names:
                job = pool.submit(echo, name, big, priority=priority)
                job.add_done_callback(functools.partial(_append, order, name, called))
            gate.open()
            blocker.result(T)
            # Not wait(jobs): a job settled by a manager thread or the Dask loop is
            # resolved before its callbacks run (on the callback thread, in order).
            assert all(called.acquire(timeout=T) for _ in names)
        assert order == ["e", "b", "d", "c", "a", "f", "g"]

    # ------------------------------------------------------ 3. timeouts

    def test_timeout_stops_the_job(self, make_pool: MakePool, tmp_path: Path) -> None:
        pool = make_pool(workers=1)
        marker = tmp_path / "ran-on"
        job = pool.submit(
            job_for(pool, jobs.until_stopped),
            None,
            str(marker),
            self.stop_grace,
            pool.capabilities.stops_running_jobs,
            timeout=0.2,
        )
        with pytest.raises(JobTimeout) as info:
            job.result(T)
        assert isinstance(info.value, TimeoutError)
        assert info.value.job_id == job.job_id
        assert job.status == "timed_out"
        # the only worker is free again
        assert pool.submit(job_for(pool, jobs.echo), "next").result(T) == "next"
        report = pool.shutdown(timeout=T)
        assert report.abandoned_threads == 0
        assert not marker.exists(), "the timed-out job kept running"
        s = pool.stats()
        assert (s.timed_out, s.succeeded, s.abandoned) == (1, 1, 0)

    def test_timeout_is_per_attempt_and_can_be_retried(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        retry = Retry(attempts=2, backoff=0, on=(JobTimeout,))
        job = pool.submit(job_for(pool, jobs.until_stopped), timeout=0.1, retry=retry)
        with pytest.raises(JobTimeout):
            job.result(T)
        assert job.attempt == 2
        s = pool.stats()
        assert (s.timed_out, s.retried) == (1, 1)

    # ------------------------------------------------------ 4. cancellation

    def test_cancel_waiting_job(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        with Gate() as gate, Latch() as latch:
            a = pool.submit(hold, gate, latch, "a")
            assert latch.wait(1, T)
            b = pool.submit(echo, "b")
            assert b.cancel() is True
            assert b.cancel() is False  # already cancelled: no effect
            assert b.cancelled() and b.done() and b.status == "cancelled"
            with pytest.raises(concurrent.futures.CancelledError):
                b.result(0)
            assert pool.stats().queued == 0
            gate.open()
            assert a.result(T) == "a"
        s = pool.stats()
        assert (s.cancelled, s.succeeded) == (1, 1)

    def test_cancel_running_job(self, make_pool: MakePool, tmp_path: Path) -> None:
        pool = make_pool(workers=1)
        marker = tmp_path / "ran-on"
        with Latch() as latch:
            job = pool.submit(
                job_for(pool, jobs.until_stopped),
                latch,
                str(marker),
                self.stop_grace,
                pool.capabilities.stops_running_jobs,
            )
            assert latch.wait(1, T)
            assert job.running()
            assert job.cancel() is True
        with pytest.raises(concurrent.futures.CancelledError):
            job.result(T)
        assert pool.submit(job_for(pool, jobs.echo), "next").result(T) == "next"
        assert pool.shutdown(timeout=T).abandoned_threads == 0
        assert not marker.exists(), "the cancelled job kept running"
        assert pool.stats().cancelled == 1

    def test_cancel_finished_job_has_no_effect(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        job = pool.submit(job_for(pool, jobs.echo), 1)
        assert job.result(T) == 1
        assert job.cancel() is False
        assert pool.stats().cancelled == 0

    # ------------------------------------------------------ 5. retries

    def test_retry_until_success(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=2)
        job = pool.submit(job_for(pool, jobs.fail_until), 3, "ok", retry=Retry(attempts=3, backoff=0.001))
        assert job.result(T) == ("ok", 3)
        s = pool.stats()
        assert (s.retried, s.succeeded, s.failed) == (2, 1, 0)

    def test_retry_gives_up_after_attempts(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=2)
        job = pool.submit(job_for(pool, jobs.fail_until), 5, retry=Retry(attempts=2, backoff=0.001))
        with pytest.raises(jobs.Transient, match="attempt 2 of 5"):
            job.result(T)
        s = pool.stats()
        assert (job.attempt, s.retried, s.failed) == (2, 1, 1)

    def test_retry_only_listed_exceptions(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        job = pool.submit(job_for(pool, jobs.fail_until), 2, retry=Retry(attempts=5, backoff=0, on=(KeyError,)))
        with pytest.raises(jobs.Transient):
            job.result(T)
        assert pool.stats().retried == 0

    def test_retry_backoff_holds_no_worker(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        slow_retry = Retry(attempts=2, backoff=600, max_backoff=600, jitter=False)
        a = pool.submit(job_for(pool, jobs.fail_until), 2, retry=slow_retry)
        b = pool.submit(job_for(pool, jobs.echo), "b")
        assert b.result(T) == "b"  # ran on the only worker while `a` waits 600 s
        assert a.status == "retrying"
        s = pool.stats()
        assert (s.retrying, s.busy, s.retried) == (1, 0, 1)
        assert s.conserved()
        assert a.cancel() is True
        assert pool.stats().retrying == 0

    # ------------------------------------------------------ 6. crash recovery

    @pytest.mark.parametrize(
        ("crash", "check"),
        [
            (jobs.exit_now, lambda e: e.exitcode == 3 and "os._exit" in e.cause),
            (jobs.kill_self, lambda e: e.signal_name == "SIGKILL" and "out-of-memory" in e.cause),
            (jobs.segfault, lambda e: e.signal_name == "SIGSEGV" and "segmentation fault" in e.cause),
            (jobs.exhaust_memory, lambda e: "MemoryError" in e.cause),
        ],
        ids=["os._exit", "SIGKILL", "segfault", "MemoryError"],
    )
    def test_crash_fails_only_its_job(
        self, make_pool: MakePool, crash: Callable[[], object], check: Callable[[WorkerCrashed], bool]
    ) -> None:
        pool = make_pool(workers=2)
        _skip_unless_crash_safe(pool)
        _skip_unless_exit_status_reported(pool)
        echo = job_for(pool, jobs.echo)
        before = [pool.submit(echo, i) for i in range(4)]
        job = pool.submit(crash)
        with pytest.raises(WorkerCrashed) as info:
            job.result(T)
        err = info.value
        assert err.job_id == job.job_id and check(err), err
        assert str(err.exitcode) in str(err)
        assert [j.result(T) for j in before] == [0, 1, 2, 3]
        assert list(pool.map(echo, range(10))) == list(range(10))  # replaced workers serve
        s = pool.stats()
        assert (s.crashed, s.failed, s.workers) == (1, 1, 2)

    def test_crash_is_retried_when_asked(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        _skip_unless_crash_safe(pool)
        job = pool.submit(jobs.crash_until, 2, "survived", retry=Retry(attempts=2, backoff=0, on=(WorkerCrashed,)))
        assert job.result(T) == ("survived", 2)
        s = pool.stats()
        assert (s.crashed, s.retried, s.succeeded) == (1, 1, 1)

    # ------------------------------------------------------ 7. shutdown

    def test_shutdown_stops_intake(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        assert pool.submit(job_for(pool, jobs.echo), 1).result(T) == 1
        report = pool.shutdown()
        assert report.succeeded == 1 and report.complete
        with pytest.raises(PoolClosed):
            pool.submit(job_for(pool, jobs.echo), 2)
        assert pool.shutdown() is report  # idempotent

    def test_shutdown_lets_waiting_jobs_finish(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=5)
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        with Gate() as gate, Latch() as latch:
            first = pool.submit(hold, gate, latch, "first")
            assert latch.wait(1, T)
            rest = [pool.submit(echo, i) for i in range(3)]
            partial = pool.shutdown(wait=False)  # intake closes now
            assert not partial.complete
            with pytest.raises(PoolClosed):
                pool.submit(echo, "late")
            gate.open()
            report = pool.shutdown()
        assert report.complete
        assert first.result(0) == "first" and [j.result(0) for j in rest] == [0, 1, 2]
        assert (report.succeeded, report.cancelled, report.killed) == (4, (), ())

    def test_shutdown_deadline_cancels_what_is_left(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=5)
        with Latch() as latch:
            running = pool.submit(job_for(pool, jobs.until_stopped), latch)
            assert latch.wait(1, T)
            waiting = [pool.submit(job_for(pool, jobs.echo), i) for i in range(2)]
            report = pool.shutdown(timeout=0.2)
        assert report.killed == (running.job_id,)
        assert sorted(report.cancelled) == sorted(j.job_id for j in waiting)
        assert report.abandoned_threads == 0
        assert all(j.cancelled() for j in [running, *waiting])

    def test_shutdown_cancel_pending(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=5)
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)
        with Gate() as gate, Latch() as latch:
            running = pool.submit(hold, gate, latch, "ran")
            assert latch.wait(1, T)
            waiting = [pool.submit(echo, i) for i in range(3)]
            pool.shutdown(wait=False, cancel_pending=True)
            assert all(j.cancelled() for j in waiting)
            gate.open()
            report = pool.shutdown()
        assert running.result(0) == "ran"
        assert sorted(report.cancelled) == sorted(j.job_id for j in waiting)
        assert report.killed == () and report.succeeded == 1

    def test_context_manager(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=2)
        with pool as p:
            assert p is pool
            job = pool.submit(job_for(pool, jobs.echo), "x")
        assert job.result(0) == "x" and pool.closed
        with pytest.raises(PoolClosed):
            pool.submit(job_for(pool, jobs.echo), "y")

    def test_shutdown_of_an_unstarted_pool(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        report = pool.shutdown()
        assert (report.succeeded, report.cancelled, report.killed) == (0, (), ())
        with pytest.raises(PoolClosed):
            pool.start()

    # ------------------------------------------------------ 8. statistics

    def test_stats_are_a_frozen_conserved_snapshot(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=2, queue_size=10)
        ok, bad = job_for(pool, jobs.echo), job_for(pool, jobs.fail)
        done = [pool.submit(ok, i) for i in range(6)] + [pool.submit(bad) for _ in range(2)]
        slow = pool.submit(job_for(pool, jobs.until_stopped), timeout=0.1)
        concurrent.futures.wait([*done, slow], T)
        s = pool.stats()
        assert (s.submitted, s.succeeded, s.failed, s.timed_out) == (9, 6, 2, 1)
        assert s.conserved() and s.finished == 9
        assert (s.busy, s.queued, s.retrying, s.rejected, s.workers, s.backend) == (0, 0, 0, 0, 2, pool.backend)
        waits = (s.queue_wait_p50, s.queue_wait_p95, s.queue_wait_p99)
        runs = (s.run_time_p50, s.run_time_p95, s.run_time_p99)
        for p50, p95, p99 in (waits, runs):
            assert p50 is not None and p95 is not None and p99 is not None, (waits, runs)
            assert 0 <= p50 <= p95 <= p99, (waits, runs)
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.succeeded = 0  # type: ignore[misc]

    def test_stats_conserved_while_busy(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=2, queue_size=10)
        with Gate() as gate, Latch() as latch:
            held = [pool.submit(job_for(pool, jobs.hold), gate, latch) for _ in range(2)]
            assert latch.wait(2, T)
            waiting = [pool.submit(job_for(pool, jobs.echo), i) for i in range(3)]
            s = pool.stats()
            assert (s.busy, s.queued, s.submitted) == (2, 3, 5) and s.conserved()
            gate.open()
            concurrent.futures.wait(held + waiting, T)
        assert pool.stats().succeeded == 5

    # ------------------------------------------------------ 9. errors

    def test_job_error_is_reraised_with_job_id_and_traceback(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        job = pool.submit(job_for(pool, jobs.fail), "boom")
        with pytest.raises(jobs.JobFailure, match="boom") as info:
            job.result(T)
        assert getattr(info.value, "job_id", None) == job.job_id  # set on the job's own exception
        text = "".join(traceback.format_exception(info.value))
        assert "raise JobFailure(message)" in text, text  # the worker's own frame
        assert job.exception() is info.value

    # ------------------------------------------------------ 10. bad arguments

    @pytest.mark.parametrize(
        ("options", "words"),
        [
            ({"workers": 0}, ["workers", "0"]),
            ({"workers": -2}, ["workers", "-2"]),
            ({"workers": "4"}, ["workers", "'4'"]),
            ({"queue_size": -1}, ["queue_size", "-1"]),
            ({"overflow": "drop"}, ["overflow", "'drop'", "block", "reject"]),
        ],
    )
    def test_bad_pool_options_raise_at_once(self, pool_backend: str, options: dict[str, Any], words: list[str]) -> None:
        with pytest.raises(InvalidArgument) as info:
            create_pool(pool_backend, **options)
        assert all(w in str(info.value) for w in words), str(info.value)

    @pytest.mark.parametrize(
        ("options", "words"),
        [
            ({"timeout": -1}, ["timeout", "-1"]),
            ({"timeout": 0}, ["timeout", "> 0"]),
            ({"timeout": float("nan")}, ["timeout", "nan"]),
            ({"priority": "high"}, ["priority", "'high'"]),
            ({"retry": 3}, ["retry", "Retry("]),
            ({"wait": -0.5}, ["wait", "-0.5"]),
        ],
    )
    def test_bad_submit_options_raise_at_once(
        self, make_pool: MakePool, options: dict[str, Any], words: list[str]
    ) -> None:
        pool = make_pool(workers=1)
        with pytest.raises(InvalidArgument) as info:
            pool.submit(job_for(pool, jobs.echo), 1, **options)
        assert all(w in str(info.value) for w in words), str(info.value)
        assert pool.stats().submitted == 0

    def test_wrong_kind_of_callable_raises_at_once(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        wrong = jobs.echo if pool.capabilities.runs == "coroutines" else jobs.aecho
        with pytest.raises(InvalidCallable, match="coroutine function"):
            pool.submit(wrong, 1)
        with pytest.raises(InvalidCallable, match="callable"):
            pool.submit(42)  # type: ignore[call-overload]  # not callable, on purpose
        with pytest.raises(InvalidCallable):
            pool.map(wrong, [1])
        assert pool.stats().submitted == 0

    # ------------------------------------------------------ the job's context

    def test_current_context_inside_a_job(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1)
        info = job_for(pool, jobs.context_info)
        job = pool.submit(info)
        got = job.result(T)
        assert (got["job_id"], got["attempt"], got["has_deadline"], got["remaining"]) == (job.job_id, 1, False, None)
        got = pool.submit(info, timeout=60).result(T)
        assert got["has_deadline"] and 0 < got["remaining"] <= 60 and not got["cancelled"]
        with pytest.raises(NoCurrentJob, match="outside a job"):
            current_context()

    # ------------------------------------------------------ async use

    def test_async_submit_and_await(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=1, queue_size=0)
        hold, echo = job_for(pool, jobs.hold), job_for(pool, jobs.echo)

        async def main() -> PoolStats:
            async with pool:
                assert await (await pool.asubmit(echo, 5)) == 5
                with Gate() as gate, Latch() as latch:
                    first = await pool.asubmit(hold, gate, latch, "first")
                    await asyncio.to_thread(latch.wait, 1, T)
                    waiting = asyncio.ensure_future(pool.asubmit(echo, "second"))
                    for _ in range(20):  # the loop keeps running while asubmit waits for room
                        await asyncio.sleep(0)
                    assert not waiting.done()
                    gate.open()
                    assert await first == "first"
                    second = await asyncio.wait_for(waiting, T)
                    assert await second == "second"
                with Gate() as gate, Latch() as latch:
                    await pool.asubmit(hold, gate, latch)
                    await asyncio.to_thread(latch.wait, 1, T)
                    with pytest.raises(QueueFull):
                        await pool.asubmit(echo, "x", wait=0.01)
            return pool.stats()

        s = asyncio.run(main())
        assert s.succeeded == 4 and s.rejected == 1 and pool.closed

    # ------------------------------------------------------ what a pool keeps, and callbacks

    def test_an_ended_job_keeps_none_of_the_callers_objects(self, make_pool: MakePool) -> None:
        # As a concurrent.futures future, which drops its call once it ran.
        pool = make_pool(workers=1)
        ignore, hold = job_for(pool, jobs.ignore), job_for(pool, jobs.hold)
        owner, arg, waiting_arg = jobs.Token(), jobs.Token(), jobs.Token()
        refs = [weakref.ref(owner), weakref.ref(arg), weakref.ref(waiting_arg)]
        done = pool.submit(functools.partial(ignore, owner), arg)  # the callable holds `owner`
        assert done.result(T) is None
        with Gate() as gate, Latch() as latch:
            blocker = pool.submit(hold, gate, latch)
            assert latch.wait(1, T)
            waiting = pool.submit(ignore, waiting_arg)
            assert waiting.cancel()
            gate.open()
            blocker.result(T)
        del owner, arg, waiting_arg
        gc.collect()
        kept = [i for i, ref in enumerate(refs) if ref() is not None]
        assert not kept, (
            f"objects {kept} (0: in the callable, 1: an argument, 2: of a cancelled job) outlived their job"
        )
        assert done.done() and waiting.cancelled()  # the jobs themselves are still here
        assert waiting.payload is None  # nor what the backend made of them (pickled arguments)

    def test_a_blocking_done_callback_delays_no_other_deadline_or_retry(self, make_pool: MakePool) -> None:
        # A done-callback is user code: while one blocks, the pool's own threads must
        # still deliver every other job's timeout and retry (the callback stays blocked
        # until the end of the test, so a delay would show as a hang, not a slow test).
        pool = make_pool(workers=3)
        hold = job_for(pool, jobs.hold)
        entered, release = threading.Event(), threading.Event()

        def blocking(_job: object) -> None:
            entered.set()
            release.wait(T)

        with Gate() as gate:
            try:
                first = pool.submit(hold, gate, timeout=0.05)
                first.add_done_callback(blocking)
                assert entered.wait(T), "the first job did not time out"
                second = pool.submit(hold, gate, timeout=0.3)
                with pytest.raises(JobTimeout):
                    second.result(T)
                late = time.monotonic() - (second.started_at + 0.3)
                assert late < 5.0, f"a timeout was reported {late:.1f} s after its deadline"
                retried = pool.submit(
                    job_for(pool, jobs.fail_until), 2, "ok", retry=Retry(attempts=2, backoff=0.05, jitter=False)
                )
                assert retried.result(T) == ("ok", 2)
                assert not release.is_set() and first.status == "timed_out"
            finally:
                release.set()
                gate.open()

    def test_job_is_a_future(self, make_pool: MakePool) -> None:
        pool = make_pool(workers=2)
        js = [pool.submit(job_for(pool, jobs.echo), i) for i in range(5)]
        assert all(isinstance(j, concurrent.futures.Future) for j in js)
        assert sorted(j.result() for j in concurrent.futures.as_completed(js, T)) == [0, 1, 2, 3, 4]
        assert len({j.job_id for j in js}) == 5

    # ------------------------------------------------------ 11. worker lifecycle

    def test_initializer_runs_in_every_worker_before_its_jobs(self, pool_backend: str, make_pool: MakePool) -> None:
        _skip_unless_lifecycle(pool_backend, "initializer")
        init = job_for(pool_backend_runs(pool_backend), jobs.set_worker_state)
        pool = make_pool(workers=2, initializer=init, initargs=("initialized",))
        state = job_for(pool, jobs.worker_state)
        results = [job.result(T) for job in [pool.submit(state, i) for i in range(8)]]
        assert [r[0] for r in results] == ["initialized"] * 8
        assert [r[2] for r in results] == list(range(8))

    def test_a_failing_initializer_breaks_the_pool(self, pool_backend: str, make_pool: MakePool) -> None:
        _skip_unless_lifecycle(pool_backend, "initializer")
        init = job_for(pool_backend_runs(pool_backend), jobs.fail_init)
        pool = make_pool(workers=2, initializer=init, initargs=("bad init",))
        echo = job_for(pool_backend_runs(pool_backend), jobs.echo)
        submitted: list[Any] = []
        refused: BaseException | None = None
        try:
            for i in range(3):
                submitted.append(pool.submit(echo, i))
        except PoolBroken as err:  # it broke meanwhile (or while starting: Dask, on connecting)
            refused = err
        assert refused is None or isinstance(refused.__cause__, jobs.JobFailure)
        for job in submitted:  # failed, never left hanging
            with pytest.raises(PoolBroken) as info:
                job.result(T)
            assert isinstance(info.value.__cause__, jobs.JobFailure), info.value.__cause__
        assert _eventually(lambda: pool.broken)
        with pytest.raises(PoolBroken, match="bad init") as later:
            pool.submit(echo, "later")
        assert isinstance(later.value.__cause__, jobs.JobFailure)
        assert isinstance(later.value, concurrent.futures.BrokenExecutor)
        s = pool.stats()
        assert s.conserved() and s.failed == len(submitted) and (s.busy, s.queued) == (0, 0)

    def test_max_tasks_per_worker_replaces_the_worker_between_jobs(
        self, pool_backend: str, make_pool: MakePool
    ) -> None:
        _skip_unless_lifecycle(pool_backend, "max_tasks_per_worker")
        pool = make_pool(workers=1, max_tasks_per_worker=2)
        state = job_for(pool, jobs.worker_state)
        ids = [r[1] for r in [job.result(T) for job in [pool.submit(state) for _ in range(6)]]]
        assert ids[0] == ids[1] != ids[2] == ids[3] != ids[4] == ids[5] != ids[0], ids
        assert pool.stats().recycled >= 2  # each replacement counted before the next worker's first job
        pool.shutdown()
        assert pool.stats().recycled == 3

    def test_recycling_loses_and_repeats_no_job(self, pool_backend: str, make_pool: MakePool) -> None:
        _skip_unless_lifecycle(pool_backend, "max_tasks_per_worker")
        pool = make_pool(workers=2, max_tasks_per_worker=3, queue_size=100)
        state = job_for(pool, jobs.worker_state)
        results = [job.result(T) for job in [pool.submit(state, i) for i in range(40)]]
        assert [r[2] for r in results] == list(range(40))
        per_worker = collections.Counter(r[1] for r in results)
        assert max(per_worker.values()) <= 3 and len(per_worker) >= 14, per_worker
        s = pool.stats()
        assert (s.submitted, s.succeeded) == (40, 40) and s.conserved()

    def test_max_memory_per_worker_replaces_a_worker_that_grew(self, pool_backend: str, make_pool: MakePool) -> None:
        _skip_unless_lifecycle(pool_backend, "max_memory_per_worker")
        pool = make_pool(workers=1, max_memory_per_worker=1 << 40)  # never reached
        state = job_for(pool, jobs.worker_state)
        assert len({pool.submit(state).result(T)[1] for _ in range(3)}) == 1
        assert pool.stats().recycled == 0
        small = make_pool(workers=1, max_memory_per_worker=1)  # every worker is above it after a job
        ids = [job.result(T)[1] for job in [small.submit(state, i) for i in range(4)]]
        assert len(set(ids)) == 4, ids
        assert small.stats().recycled >= 3

    def test_resize_shrinks_without_cancelling_and_grows_back(self, pool_backend: str, make_pool: MakePool) -> None:
        _skip_unless_lifecycle(pool_backend, "resize")
        pool = make_pool(workers=3, queue_size=10)
        hold = job_for(pool, jobs.hold)
        with Gate() as gate, Latch() as latch:
            running = [pool.submit(hold, gate, latch, i) for i in range(3)]
            assert latch.wait(3, T)
            pool.resize(1)
            s = pool.stats()
            assert (s.workers, s.busy, s.cancelled) == (1, 3, 0), s
            gate.open()
            assert [job.result(T) for job in running] == [0, 1, 2]
        with Gate() as gate, Latch() as latch:
            big = b"x" * PADDING  # never sent ahead to a busy worker: the queue's own order
            later = [pool.submit(hold, gate, latch, big) for _ in range(2)]
            assert latch.wait(1, T)
            s = pool.stats()
            assert (s.busy, s.queued) == (1, 1), s  # one at a time now
            pool.resize(3)
            assert latch.wait(2, T)  # the waiting one starts at once
            assert pool.stats().workers == 3
            gate.open()
            concurrent.futures.wait(later, T)
        assert pool.stats().succeeded == 5 and pool.stats().cancelled == 0

    def test_resize_is_checked(self, pool_backend: str, make_pool: MakePool) -> None:
        _skip_unless_lifecycle(pool_backend, "resize")
        pool = make_pool(workers=2)
        for bad, words in [(0, [">= 1", "0"]), (-1, ["-1"]), ("3", ["'3'"])]:
            with pytest.raises(InvalidArgument) as info:
                pool.resize(bad)  # type: ignore[arg-type]
            assert all(w in str(info.value) for w in ["workers", *words]), str(info.value)
        pool.shutdown()
        with pytest.raises(PoolClosed):
            pool.resize(3)

    def test_idle_workers_above_the_minimum_exit_and_come_back(self, pool_backend: str, make_pool: MakePool) -> None:
        _skip_unless_lifecycle(pool_backend, "idle_timeout")
        pool = make_pool(workers=3, min_workers=1, idle_timeout=0.05, queue_size=10).start()
        assert pool.stats().alive == 1
        hold = job_for(pool, jobs.hold)
        for _ in range(2):  # grows on demand, shrinks back when idle, and again
            with Gate() as gate, Latch() as latch:
                held = [pool.submit(hold, gate, latch, i) for i in range(3)]
                assert latch.wait(3, T)
                assert pool.stats().alive == 3
                gate.open()
                assert [job.result(T) for job in held] == [0, 1, 2]
            assert _eventually(lambda: pool.stats().alive == 1), pool.stats()
        with pytest.raises(InvalidArgument, match=r"workers must be >= min_workers \(1\), got 0|>= 1"):
            pool.resize(0)

    @pytest.mark.parametrize(
        ("options", "words"),
        [
            ({"max_tasks_per_worker": 0}, ["max_tasks_per_worker", ">= 1", "0"]),
            ({"max_memory_per_worker": -5}, ["max_memory_per_worker", ">= 1", "-5"]),
            ({"idle_timeout": -1}, ["idle_timeout", "> 0", "-1"]),
            ({"min_workers": 3, "workers": 2, "idle_timeout": 1}, ["min_workers", "<= workers (2)", "3"]),
            ({"min_workers": 1}, ["min_workers=1", "idle_timeout"]),
            ({"initializer": 42}, ["initializer", "callable", "42"]),
            ({"initargs": (1,)}, ["initargs", "without an initializer"]),
        ],
    )
    def test_bad_lifecycle_options_raise_at_once(
        self, pool_backend: str, options: dict[str, Any], words: list[str]
    ) -> None:
        with pytest.raises(InvalidArgument) as info:
            create_pool(pool_backend, **options)
        assert all(w in str(info.value) for w in words), str(info.value)

    @pytest.mark.parametrize(
        ("option", "value"),
        [("max_tasks_per_worker", 5), ("max_memory_per_worker", 1 << 30), ("idle_timeout", 1.0), ("initializer", None)],
    )
    def test_a_lifecycle_option_that_does_not_apply_is_refused_naming_why(
        self, pool_backend: str, option: str, value: Any
    ) -> None:
        why = backend_class(pool_backend).capabilities.why_not(option)
        if why is None:
            pytest.skip(f"the {pool_backend!r} backend honours {option}")
        if option == "initializer":
            value = jobs.set_worker_state
        with pytest.raises(InvalidArgument) as info:
            create_pool(pool_backend, **{option: value})
        assert f"{option}= does not apply to the {pool_backend!r} backend: {why}" in str(info.value)


def pool_backend_runs(backend: str) -> str:
    """What a backend runs ("callables" or "coroutines"), for ``job_for`` before a pool exists."""
    return backend_class(backend).capabilities.runs


__all__ = ["PoolConformance"]
