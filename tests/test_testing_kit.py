"""pools.testing is library code: the leak checker catches real leaks, and the
pytest plugin lets a user's project run the conformance suite on its own backend."""

import threading

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
        leaks = find_leaks(before, timeout=0.05)
        assert any("never shut down" in leak for leak in leaks)
        assert any(f"process {pid}" in leak for leak in leaks)
        assert any("manager" in leak for leak in leaks)
    finally:
        pool.shutdown()
    assert find_leaks(before, timeout=5) == []


def test_no_leaks_context_manager_passes_clean_code():
    with no_leaks(timeout=5), pools.create_pool("thread", workers=2) as pool:
        assert pool.submit(pow, 3, 3).result(30) == 27


def test_a_new_backend_passes_the_conformance_suite_with_one_class(pytester):
    pytester.makeconftest(
        """
        import pytest
        import pools
        from pools.thread import ThreadPool

        class MyPool(ThreadPool):
            backend = "mine"

        pools.register_backend("mine", MyPool)

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
    # crash recovery does not apply to in-process backends: skipped, with the reason
    assert outcomes["skipped"] == 5
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
    cancelled job for its caller but never stops its function (its _stop_running does
    nothing) fails them, on the marker that the probe job writes."""
    pytester.makeconftest(
        f"""
        import pools
        from pools.thread import ThreadPool

        class RunsOn(ThreadPool):
            backend = "runs-on"
            stops_running_jobs = {claims_to_stop}

            def _stop_running(self, job, attempt):
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
