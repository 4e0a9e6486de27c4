"""Testing concurrent code: the conformance kit run on a deliberately buggy backend
(written against pools.lowlevel as a user's would be): what it catches."""

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


def run(case: Case, impl: Implementation, seed: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "conftest.py"), "w") as f:
            f.write(textwrap.dedent(_RACY_CONFTEST))
        with open(os.path.join(tmp, "test_racy.py"), "w") as f:
            f.write(textwrap.dedent(_RACY_TEST))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--rootdir",
                tmp,
                tmp,
                "-rf",
                "-o",
                "addopts=",
                "--timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp,
        )
    failed = sorted(
        {
            line.split("::")[-1].split(" ")[0].split("[")[0]
            for line in proc.stdout.splitlines()
            if line.startswith("FAILED")
        }
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return Result(
        jobs=case.scenario.jobs,
        completed=1,
        failed=len(failed),
        findings=RacyFindings(caught_by=failed, summary=summary),
    )


def applies(impl: Implementation) -> str | None:
    if impl.name == "thread":
        return None
    return "racy_pool runs the conformance kit on a buggy thread backend of its own: it runs as 'thread' only"


def note(f: RacyFindings) -> str:
    n = len(f.caught_by)
    return f"conformance kit failed the racy pool in {n} tests" if n else "conformance kit caught nothing"


EXPERIMENT = Experiment("racy_pool", run, RacyFindings, applies, note)
