"""Testing concurrent code: the conformance kit run on a deliberately buggy backend
(written against pools.lowlevel as a user's would be): what it catches; and race
mode's odds: a backend with a timing bug (a lost wake-up) under one test, run N
times plainly and N times under ``--pools-race``, the failures counted."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field

from ..implementations import Implementation
from ..result import Result
from ..spec import Case
from . import Experiment

__all__ = ["EXPERIMENT", "RacyFindings"]


@dataclass(frozen=True)
class RacyFindings:
    #: the conformance tests that failed on the buggy backend
    caught_by: list[str] = field(default_factory=list)
    #: pytest's last line
    summary: str = ""
    #: runs of the lost wake-up test in each mode
    race_runs: int = 0
    #: of those, failed under race mode (--pools-race) ...
    caught_with_race: int = 0
    #: ... and failed in plain runs
    caught_without_race: int = 0
    #: the first seed of the race-mode runs (run i had seed + i)
    race_seed: int | None = None


_RACY_CONFTEST = '''
import pools
from pools.thread import ThreadBackend


class RacyBackend(ThreadBackend):
    """Two classic backend bugs, written against pools.lowlevel as a user's backend
    would be: work abandoned by a timeout counted twice, and a cancel that never
    reaches the running job."""

    name = "racy"

    def preempted_locked(self, job):
        super().preempted_locked(job)
        self.dispatcher.add_abandoned_locked(1)  # a double count: stats().abandoned never returns to 0

    def stop_attempt(self, job, attempt):
        pass  # a lost stop: the job's context is never cancelled, its function runs on


pools.register_backend("racy", RacyBackend)
'''

_RACY_TEST = """
from pools.testing.conformance import PoolConformance


class TestRacy(PoolConformance):
    backends = ("racy",)
    stop_grace = 0.5  # a probe left running reports itself after 0.5 s
"""


# The timing bug: the worker clears its wake-up *after* finding the queue empty, so a
# job queued between that look and the clear is not seen. The backend marks its own
# hand-off with pools.lowlevel.race_point, as a backend author would: a no-op off
# race mode, where race mode may yield or pause.
_LOST_WAKEUP_CONFTEST = """
import threading

import pools
from pools.lowlevel import Backend, Capabilities, Outcome, check_plain_callable, race_point


class LostWakeupBackend(Backend):
    name = "lost_wakeup"
    capabilities = Capabilities(
        runs="callables", stops_running_jobs=False, survives_crashes=False, carries_contextvars=False,
        no_crash_recovery="a deliberately buggy test backend",
    )

    def __init__(self, dispatcher, *, workers=None):
        super().__init__(dispatcher, workers=1)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name=f"{dispatcher.name}-worker", daemon=True)

    def prepare(self, fn, args):
        check_plain_callable(self.name, fn)

    def start(self):
        self._thread.start()

    def wake_locked(self):
        self._wake.set()

    def stop_attempt(self, job, attempt):
        pass

    def stop(self, deadline):
        self._stopping = True
        while self._thread.is_alive():  # the same bug can swallow this wake-up too
            self._wake.set()
            self._thread.join(0.01)
        return 0

    def _work(self):
        d = self.dispatcher
        while True:
            with d.lock:
                job = d.take_locked()
            race_point("take")
            if job is None:
                if self._stopping:
                    return
                self._wake.clear()  # the bug: a wake-up that came since take_locked() is lost
                self._wake.wait()
                continue
            fn, args, attempt = job.fn, job.args, job.attempt
            try:
                value, outcome = fn(*args), Outcome.OK
            except Exception as e:
                value, outcome = e, Outcome.ERROR
            d.finish(job, attempt, outcome, value)


pools.register_backend("lost_wakeup", LostWakeupBackend)
"""

_LOST_WAKEUP_TEST = """
import os

import pytest

import pools


@pytest.mark.parametrize("run", range(int(os.environ.get("RACY_RUNS", "1"))))
def test_every_job_is_taken(run):
    with pools.create_pool("lost_wakeup") as pool:
        for i in range(200):
            assert pool.submit(abs, -i).result(timeout=0.2) == i
"""

RACE_RUNS = 20


def _pytest(tmp: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            tmp,
            "-rf",
            "-o",
            "addopts=",
            "--timeout",
            "60",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
        env=None if env is None else {**os.environ, **env},
    )


def _failed(proc: subprocess.CompletedProcess[str]) -> int:
    return sum(1 for line in proc.stdout.splitlines() if line.startswith("FAILED"))


def race_odds(runs: int, seed: int) -> tuple[int, int]:
    """The lost wake-up test run ``runs`` times plainly and ``runs`` times under race
    mode (seeds ``seed``...): (failed under race mode, failed plainly)."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "conftest.py"), "w") as f:
            f.write(_LOST_WAKEUP_CONFTEST)
        with open(os.path.join(tmp, "test_lost_wakeup.py"), "w") as f:
            f.write(_LOST_WAKEUP_TEST)
        plain = _pytest(tmp, tmp, env={"RACY_RUNS": str(runs)})
        raced = _pytest(tmp, tmp, f"--pools-race={runs}", f"--pools-race-seed={seed}", env={"RACY_RUNS": "1"})
    for proc in (plain, raced):
        if proc.returncode not in (0, 1):
            raise RuntimeError(
                f"the lost wake-up test did not run (pytest exit {proc.returncode}): {proc.stdout[-500:]}"
            )
    return _failed(raced), _failed(plain)


def run(case: Case, impl: Implementation, seed: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "conftest.py"), "w") as f:
            f.write(textwrap.dedent(_RACY_CONFTEST))
        with open(os.path.join(tmp, "test_racy.py"), "w") as f:
            f.write(textwrap.dedent(_RACY_TEST))
        proc = _pytest(tmp, tmp)
    failed = sorted(
        {
            line.split("::")[-1].split(" ")[0].split("[")[0]
            for line in proc.stdout.splitlines()
            if line.startswith("FAILED")
        }
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    race_seed = 1000 * seed + 1
    with_race, without = race_odds(RACE_RUNS, race_seed)
    return Result(
        jobs=case.scenario.jobs,
        completed=1,
        failed=len(failed),
        findings=RacyFindings(
            caught_by=failed,
            summary=summary,
            race_runs=RACE_RUNS,
            caught_with_race=with_race,
            caught_without_race=without,
            race_seed=race_seed,
        ),
    )


def applies(impl: Implementation) -> str | None:
    if impl.name == "thread":
        return None
    return "racy_pool runs the conformance kit on a buggy thread backend of its own: it runs as 'thread' only"


def note(f: RacyFindings) -> str:
    n = len(f.caught_by)
    kit = f"conformance kit failed the racy pool in {n} tests" if n else "conformance kit caught nothing"
    if not f.race_runs:
        return kit
    return (
        f"{kit}; the lost wake-up caught in {f.caught_with_race}/{f.race_runs} runs under race mode, "
        f"{f.caught_without_race}/{f.race_runs} without"
    )


EXPERIMENT = Experiment("racy_pool", run, RacyFindings, applies, note)
