"""pools.testing is library code: the leak checker catches real leaks, and the
pytest plugin lets a user's project run the conformance suite on its own backend."""

import threading
import time

import pytest

import pools
from pools.testing import check_leaks, find_leaks, jobs, no_leaks, snapshot

pytest_plugins = ["pytester"]


def test_leak_checker_catches_a_thread_and_names_it():
    stop = threading.Event()
    before = snapshot()
    t = threading.Thread(target=stop.wait, name="left-behind")
    t.start()
    try:
        with pytest.raises(pools.Leaked) as info:
            check_leaks(before, timeout=0.05)
        assert any("left-behind" in leak for leak in info.value.leaks)
    finally:
        stop.set()
        t.join()
    assert find_leaks(before, timeout=5) == []


def test_leak_checker_catches_a_pool_left_open_and_its_workers():
    before = snapshot()
    pool = pools.create_pool("process", workers=1)
    pid = pool.submit(jobs.context_info).result(30)["pid"]
    try:
        # Its workers live as long as the pool: the checker does not wait for them
        # (this would take the whole minute).
        t0 = time.monotonic()
        leaks = find_leaks(before, timeout=60)
        assert time.monotonic() - t0 < 30
        assert any("never shut down" in leak for leak in leaks)
        assert any(f"process {pid}" in leak for leak in leaks)
        assert any("manager" in leak for leak in leaks)
    finally:
        pool.shutdown()
    assert find_leaks(before, timeout=5) == []


def test_no_leaks_context_manager_passes_clean_code():
    with no_leaks(timeout=5), pools.create_pool("thread", workers=2) as pool:
        assert pool.submit(pow, 3, 3).result(30) == 27


# A backend written from scratch against pools.lowlevel alone, outside the package:
# threads woken by a semaphore (not the built-in backend's condition on the pool lock).
SIMPLE_BACKEND = """
import threading

import pools
from pools.lowlevel import (
    Backend, Capabilities, DeadlineWatch, JobContext, Outcome,
    cancel_context, check_plain_callable, reset_current_context, set_current_context,
)


class Simple(Backend):
    name = "simple"
    capabilities = Capabilities(
        runs="callables", stops_running_jobs=False, survives_crashes=False, carries_contextvars=False,
        no_crash_recovery="the 'simple' backend runs jobs in this process",
    )

    def prepare(self, fn, args):
        check_plain_callable(self.name, fn)

    def start(self):
        self._wakeups = threading.Semaphore(0)
        self._stopping = False
        self._deadlines = DeadlineWatch(self.dispatcher.timer, self._expired)
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.dispatcher.workers)]
        for thread in self._threads:
            thread.start()

    def wake_locked(self):
        self._wakeups.release()

    def _work(self):
        d = self.dispatcher
        while True:
            self._wakeups.acquire()
            if self._stopping:
                return
            while True:
                with d.lock:
                    job = d.take_locked()
                if job is None:
                    break
                self._run(job)

    def _run(self, job):
        d, attempt = self.dispatcher, job.attempt
        deadline = None if job.timeout is None else job.started_at + job.timeout
        ctx = job.backend_slot = JobContext(job.job_id, attempt, deadline)
        fn, args = job.fn, job.args
        if fn is None or not d.is_current(job, attempt):  # cancelled since the take
            value, outcome = None, Outcome.ERROR
        else:
            if deadline is not None:
                self._deadlines.arm(ctx, deadline, job, attempt)
            token = set_current_context(ctx)
            try:
                value, outcome = fn(*args), Outcome.OK
            except BaseException as exc:
                value, outcome = exc, Outcome.ERROR
            finally:
                reset_current_context(token)
                self._deadlines.disarm(ctx)
        if not d.finish(job, attempt, outcome, value):  # settled from outside while it ran
            with d.lock:
                d.add_abandoned_locked(-1)

    def _expired(self, job, attempt):
        if self.dispatcher.timed_out(job, attempt, preempted=True):
            self.stop_attempt(job, attempt)

    def preempted_locked(self, job):
        self.dispatcher.add_abandoned_locked(1)

    def stop_attempt(self, job, attempt):
        ctx = job.backend_slot
        if isinstance(ctx, JobContext) and ctx.attempt == attempt:
            cancel_context(ctx)

    def stop(self, deadline):
        import time

        self._stopping = True
        for _ in self._threads:
            self._wakeups.release()
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self._threads)


pools.register_backend("mine", Simple)
"""


def test_a_new_backend_passes_the_conformance_suite_with_one_class(pytester):
    pytester.makeconftest(
        SIMPLE_BACKEND
        + """
import pytest

@pytest.fixture(autouse=True)
def _no_leaks(leak_check):
    yield
"""
    )
    pytester.makepyfile(
        """
        from pools.testing.conformance import PoolConformance

        class TestMine(PoolConformance):
            backends = ("mine",)
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-W", "error")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 35
    # crash recovery does not apply to in-process backends, nor the worker lifecycle
    # options to a backend that declares none (8 tests): skipped, with the reason
    assert outcomes["skipped"] == 5 + 8
    result.stdout.no_fnmatch_line("*FAILED*")
    verbose = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-rs", "-k", "resize or initializer")
    verbose.stdout.fnmatch_lines(["*resize does not apply to the 'mine' backend: the backend does not declare it*"])
    result.stdout.no_fnmatch_line("*FAILED*")


def test_the_plugin_fails_a_test_that_leaks(pytester):
    pytester.makepyfile(
        """
        import pools

        def test_forgets_shutdown(leak_check):
            pools.create_pool("thread", workers=1).submit(pow, 2, 2).result(30)
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*never shut down*"])


@pytest.mark.parametrize(
    ("claims_to_stop", "caught"),
    [
        # It claims to kill or cancel running jobs (as process and asyncio do) but
        # cannot: both a timed-out and a cancelled job run on.
        (True, ["the timed-out job kept running", "the cancelled job kept running"]),
        # Cooperative (as thread and Dask are), but a cancel never reaches the job's
        # context. Its deadline still does (the context says so by itself), so only
        # the cancelled job runs on.
        (False, ["the cancelled job kept running"]),
    ],
    ids=["claims-to-kill", "cooperative"],
)
def test_the_conformance_suite_catches_a_backend_that_lets_stopped_jobs_run_on(pytester, claims_to_stop, caught):
    """The "kept running" checks can fail: a backend that settles a timed-out or
    cancelled job for its caller but never stops its function (its stop_attempt does
    nothing) fails them, on the marker that the probe job writes."""
    pytester.makeconftest(
        f"""
        import dataclasses
        import pools
        from pools.thread import ThreadBackend

        class RunsOn(ThreadBackend):
            name = "runs-on"
            capabilities = dataclasses.replace(ThreadBackend.capabilities, stops_running_jobs={claims_to_stop})

            def stop_attempt(self, job, attempt):
                pass  # the job's context is never cancelled: its function runs on

        pools.register_backend("runs-on", RunsOn)
        """
    )
    pytester.makepyfile(
        """
        from pools.testing.conformance import PoolConformance

        class TestRunsOn(PoolConformance):
            backends = ("runs-on",)
            stop_grace = 0.5  # a probe left running reports itself after 0.5 s
        """
    )
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-W", "error", "-k", "timeout_stops_the_job or cancel_running_job"
    )
    result.assert_outcomes(failed=len(caught), passed=2 - len(caught))
    result.stdout.fnmatch_lines([f"*AssertionError: {c}*" for c in caught])
