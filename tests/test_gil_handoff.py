"""A thread submitting a burst of jobs lets other threads have the GIL
(``pools._core.YIELD_EVERY``); a lone submit, one at a time, or one made on the loop
the pool's jobs run on, does not.

CPython makes a thread that wants the GIL wait a switch interval while another runs
Python code. With the interval set to 10 s, a thread waiting for the GIL runs during
a 0.3 s burst of submits only if the GIL is let go: where nothing else in ``submit``
does (every worker busy, so no worker is woken), the yield does. Where the pool must
not yield, its yields are counted.
"""

import asyncio
import contextlib
import gc
import sys
import threading
import time

import pytest

import pools._core
from pools.testing import jobs
from pools.testing.jobs import Gate, Latch

T = 60.0
BURST = 0.3  # seconds of submits, far below the switch interval


@pytest.fixture
def long_switch_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    yield
    sys.setswitchinterval(old)


@contextlib.contextmanager
def no_gc():
    """A burst makes thousands of jobs: a collection inside it could finalize an earlier
    test's garbage (closing a file lets the GIL go), so it runs before, not during."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class CountedYields:
    """``pools._core``'s ``time`` module, with its ``sleep(0)`` calls counted."""

    def __init__(self) -> None:
        self.count = 0

    def sleep(self, seconds: float) -> None:
        self.count += seconds == 0
        time.sleep(seconds)

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def yields(monkeypatch):
    counted = CountedYields()
    monkeypatch.setattr(pools._core, "time", counted)
    return counted


class Probe:
    """A thread that, once released, wants the GIL for one statement."""

    def __init__(self) -> None:
        self.ran = threading.Event()
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._go.wait()  # waits without the GIL
        self.ran.set()  # needs it

    def release(self) -> None:
        self._go.set()

    def ran_now(self) -> bool:
        return self.ran.is_set()  # reads a flag: lets no thread in


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.fixture
def busy_thread_pool(make_pool):
    """A thread pool whose workers are all held: a submit wakes none of them."""
    pool = make_pool("thread", workers=2, queue_size=1_000_000)
    with Gate() as gate, Latch() as latch:
        held = [pool.submit(jobs.hold, gate, latch) for _ in range(2)]
        assert latch.wait(2, T)
        yield pool
    for job in held:
        job.result(T)


def test_a_burst_of_submits_lets_a_waiting_thread_run(busy_thread_pool, long_switch_interval):
    probe = Probe()
    probe.release()
    with no_gc():
        end = time.monotonic() + BURST
        while time.monotonic() < end and not probe.ran_now():
            busy_thread_pool.submit(jobs.echo, 1)
    assert probe.ran_now(), "the thread waiting for the GIL did not run during the burst"


def test_a_burst_of_asubmits_lets_a_waiting_thread_run(busy_thread_pool, long_switch_interval):
    probe = Probe()

    async def burst() -> bool:
        probe.release()
        with no_gc():
            end = time.monotonic() + BURST
            while time.monotonic() < end and not probe.ran_now():
                await busy_thread_pool.asubmit(jobs.echo, 1)  # room: it never awaits
        return probe.ran_now()

    assert asyncio.run(burst()), "the thread waiting for the GIL did not run during the burst"


# The pool's own yields are counted here, not a waiting thread's chance to run: in a
# process that ran other tests, a thread left waiting on the GIL since before the
# switch interval changed can force a switch at any time.


def test_submits_spaced_by_the_callers_own_work_do_not_yield(busy_thread_pool, yields):
    # A caller that computes between its submits holds the GIL as any Python code
    # does: the pool lets it go only for a burst of its own submits.
    end = time.monotonic() + BURST
    while time.monotonic() < end:
        busy_thread_pool.submit(jobs.echo, 1)
        spin(0.002)
    assert yields.count == 0


def test_submits_on_the_pools_own_loop_do_not_yield(make_pool, yields):
    async def main() -> None:
        pool = make_pool("asyncio", workers=2, queue_size=1_000_000)
        await pool.submit(jobs.aecho, 0)  # started on this loop: its jobs run here
        submitted = []
        end = time.monotonic() + BURST
        while time.monotonic() < end:
            submitted.append(pool.submit(jobs.aecho, len(submitted)))
        assert yields.count == 0
        assert await asyncio.gather(*submitted) == list(range(len(submitted)))

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_burst_of_submits_lets_the_pool_run_jobs_meanwhile(make_pool, backend, long_switch_interval):
    pool = make_pool(backend, workers=2, queue_size=1_000_000)
    pool.submit(jobs.echo, 0).result(T)  # started, and every import done
    submitted = []
    with no_gc():
        end = time.monotonic() + BURST
        while time.monotonic() < end:
            submitted.append(pool.submit(jobs.echo, len(submitted)))
    done_during_burst = sum(job.done() for job in submitted)
    assert done_during_burst > 0, f"none of {len(submitted)} jobs ended during the burst"
    assert [job.result(T) for job in submitted] == list(range(len(submitted)))


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_one_job_at_a_time_never_yields(make_pool, backend, yields):
    # Submit, then wait for the result: the caller lets the GIL go as it waits, and no
    # other job waits, however close together the submits come.
    pool = make_pool(backend, workers=1)
    for i in range(500):
        assert pool.submit(jobs.echo, i).result(T) == i
    assert yields.count == 0


def test_a_burst_after_a_quiet_spell_yields_whatever_came_before(busy_thread_pool, yields):
    # As after a burst whose yields were costly (CPU-bound jobs): one per YIELD_RAREST.
    busy_thread_pool._yield_gap = pools._core.YIELD_RAREST
    busy_thread_pool.submit(jobs.echo, 0)
    time.sleep(2 * pools._core.YIELD_RAREST)  # quiet: no submit for that long
    with no_gc():
        end = time.monotonic() + 8 * pools._core.YIELD_EVERY
        while time.monotonic() < end:
            busy_thread_pool.submit(jobs.echo, 1)
    assert yields.count >= 1
