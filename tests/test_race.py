"""Race mode (pools.testing.race and the plugin's --pools-race): a racy test fails
under it with a printed seed, and that seed replays the failure."""

from __future__ import annotations

import re
import sys
import threading

import pytest

import pools
from pools import _core
from pools.exceptions import InvalidArgument, RaceFailure
from pools.testing.race import race_mode, run_with_race

pytest_plugins = ["pytester"]

# A lost update: two workers read the counter, both write their read plus one. The
# test marks its own hand-off (race_point), where race mode may pause: a backend
# author marks a backend's the same way.
RACY_TEST = """
import pools
from pools.lowlevel import race_point

state = {"n": 0}


def bump():
    n = state["n"]
    race_point("bump")
    state["n"] = n + 1


def test_every_bump_counts():
    state["n"] = 0
    with pools.create_pool("thread", workers=4) as pool:
        for job in [pool.submit(bump) for _ in range(400)]:
            job.result()
    assert state["n"] == 400, f"lost updates: {400 - state['n']}"
"""


def test_a_racy_test_fails_under_race_mode_with_its_seed_and_the_seed_replays_it(pytester):
    pytester.makepyfile(test_racy=RACY_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "--pools-race=3")
    assert result.ret == 1
    out = result.stdout.str()
    seeds = re.findall(r"failed under race mode with seed (\d+); replay: pytest --pools-race-seed=\1 ", out)
    assert seeds, out
    assert "pools race mode: failures and their seeds" in out
    assert "lost updates:" in out

    replay = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", f"--pools-race-seed={seeds[0]}", "test_racy.py::test_every_bump_counts"
    )
    assert replay.ret == 1
    assert f"failed under race mode with seed {seeds[0]}" in replay.stdout.str()
    assert "lost updates:" in replay.stdout.str()
    replay.assert_outcomes(failed=1)


def test_without_race_mode_the_plugin_changes_nothing(pytester):
    pytester.makepyfile(
        """
        import sys
        from pools import _core

        def test_off(pools_race):
            assert pools_race is None
            assert _core._race_hook is None
            assert sys.getswitchinterval() == 0.005
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "race mode" not in result.stdout.str()


def test_race_mode_reaches_every_hand_off_point_and_restores_the_interpreter():
    interval = sys.getswitchinterval()
    release = threading.Event()
    with race_mode(seed=7) as mode:
        assert sys.getswitchinterval() < 1e-5
        with pools.create_pool("thread", workers=2) as pool:
            pool.submit(int).result()
            # It ignores its context: the pool's clock settles its timeout (the "timeout" point).
            slow = pool.submit(release.wait, 10, timeout=0.05)
            with pytest.raises(pools.JobTimeout):
                slow.result(timeout=10)
            release.set()
            held = pool.submit(_wait_stopped)
            held.cancel()
    assert {"submit", "take", "finish", "cancel", "timeout", "shutdown"} <= set(mode.points), mode.points
    assert sys.getswitchinterval() == interval
    assert _core._race_hook is None


def _wait_stopped() -> None:
    pools.current_context().wait(10)  # until the pool stops it


def test_run_with_race_names_the_seed_that_failed():
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("second run")

    with pytest.raises(RaceFailure, match=r"run 2 of 5 under race mode failed with seed 101") as info:
        run_with_race(flaky, runs=5, seed=100)
    assert info.value.seed == 101
    assert isinstance(info.value.__cause__, ValueError)


def test_one_race_mode_at_a_time():
    with race_mode(seed=1), pytest.raises(InvalidArgument, match="already on"), race_mode(seed=2):
        pass
    assert _core._race_hook is None
