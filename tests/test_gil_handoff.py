"""A thread submitting a burst of jobs lets the pool's own threads have the GIL.

CPython makes a thread that wants the GIL wait a switch interval while another runs
Python code. With the interval set to 10 s, a burst of 0.3 s of submits would let no
worker thread, process manager or event loop of the pool start or end a job: every
job done before the burst ends was let in by the submitter (``pools._core.YIELD_EVERY``).
"""

import sys
import time

import pytest

from pools.testing import jobs

T = 60.0
BURST = 0.3  # seconds of back-to-back submits, far below the switch interval


@pytest.fixture
def long_switch_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("backend", ["thread", "process", "asyncio"])
def test_a_burst_of_submits_lets_the_pool_run_jobs_meanwhile(make_pool, backend, long_switch_interval):
    fn = jobs.aecho if backend == "asyncio" else jobs.echo
    pool = make_pool(backend, workers=2, queue_size=1_000_000)
    pool.submit(fn, 0).result(T)  # started, and every import done
    submitted = []
    end = time.monotonic() + BURST
    while time.monotonic() < end:
        submitted.append(pool.submit(fn, len(submitted)))
    done_during_burst = sum(job.done() for job in submitted)
    assert done_during_burst > 0, f"none of {len(submitted)} jobs ended during the burst"
    assert [job.result(T) for job in submitted] == list(range(len(submitted)))
