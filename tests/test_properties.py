"""Property-based: random interleavings of submit, cancel, timeout, failure, crash
and shutdown keep the conservation law at every step and end every accepted job
in exactly one terminal state."""

import concurrent.futures

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pools
from pools.testing import jobs
from pools.testing.jobs import Gate, job_for

T = 30.0
TALLY: dict = {}
EXAMPLES = {"thread": 80, "asyncio": 60, "process": 25}

kinds = st.sampled_from(["ok", "fail", "hold", "stopped", "retry", "crash"])
submit = st.tuples(
    st.just("submit"),
    kinds,
    st.integers(-2, 2),  # priority
    st.sampled_from([None, None, 0.05]),  # timeout
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 40))
ops = st.lists(
    st.one_of(submit, submit, submit, submit, cancel, cancel, st.just(("open",))),
    min_size=8,
    max_size=40,
)
shutdown_at = st.one_of(st.none(), st.integers(0, 30))  # an early shutdown(wait=False)


def _submit(pool, gate, kind, priority, timeout):
    if kind == "crash" and not pool.capabilities.survives_crashes:
        kind = "fail"
    if kind == "ok":
        return pool.submit(job_for(pool, jobs.echo), "ok", priority=priority, timeout=timeout)
    if kind == "fail":
        return pool.submit(job_for(pool, jobs.fail), priority=priority, timeout=timeout)
    if kind == "hold":
        return pool.submit(job_for(pool, jobs.hold), gate, None, "held", priority=priority, timeout=timeout)
    if kind == "stopped":
        return pool.submit(job_for(pool, jobs.until_stopped), priority=priority, timeout=timeout)
    if kind == "retry":
        retry = pools.Retry(attempts=2, backoff=0.001)
        return pool.submit(
            job_for(pool, jobs.fail_until), 2, "retried", priority=priority, timeout=timeout, retry=retry
        )
    return pool.submit(jobs.crash_until, 2, "crashed", priority=priority, timeout=timeout)


def _check_terminal(job):
    """Exactly one terminal state, and the Future agrees with it."""
    assert job.done(), job
    status = job.status
    assert status in ("succeeded", "failed", "cancelled", "timed_out"), job
    if status == "cancelled":
        assert job.cancelled()
        return
    assert not job.cancelled()
    exc = job.exception(0)
    if status == "succeeded":
        assert exc is None
    elif status == "timed_out":
        assert isinstance(exc, pools.JobTimeout) and exc.job_id == job.job_id
    else:
        assert exc is not None and not isinstance(exc, pools.JobTimeout)


@pytest.mark.slow
def test_random_interleavings_conserve_jobs(pool_backend):
    @settings(
        max_examples=EXAMPLES.get(pool_backend, 20),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(
        ops=ops,
        shutdown_at=shutdown_at,
        workers=st.integers(1, 3),
        queue_size=st.integers(0, 4),
        overflow=st.sampled_from(["block", "reject"]),
    )
    def run(ops, shutdown_at, workers, queue_size, overflow):
        pool = pools.create_pool(pool_backend, workers=workers, queue_size=queue_size, overflow=overflow)
        accepted = []
        with Gate() as gate:
            try:
                for i, op in enumerate(ops):
                    if i == shutdown_at:
                        pool.shutdown(wait=False, timeout=0.05)
                    if op[0] == "submit":
                        try:
                            # a blocking submit must not wait for a held gate forever
                            accepted.append(
                                _submit(pool, gate, *op[1:])
                                if overflow == "reject"
                                else _submit_bounded(pool, gate, *op[1:])
                            )
                        except (pools.QueueFull, pools.PoolClosed):
                            pass
                    elif op[0] == "cancel" and accepted:
                        accepted[op[1] % len(accepted)].cancel()
                    elif op[0] == "open":
                        gate.open()
                    assert pool.stats().conserved(), pool.stats()
                gate.open()
                report = pool.shutdown(timeout=0.1)
            finally:
                gate.open()
                pool.shutdown(timeout=T)
        concurrent.futures.wait(accepted, T)
        TALLY[pool_backend] = TALLY.get(pool_backend, 0) + len(accepted)
        for job in accepted:
            _check_terminal(job)
        s = pool.stats()
        assert s.conserved() and (s.queued, s.busy, s.retrying) == (0, 0, 0)
        assert s.submitted == len(accepted)
        by_state = {
            state: sum(j.status == state for j in accepted)
            for state in ("succeeded", "failed", "cancelled", "timed_out")
        }
        assert by_state == {
            "succeeded": s.succeeded,
            "failed": s.failed,
            "cancelled": s.cancelled,
            "timed_out": s.timed_out,
        }
        assert report.abandoned_threads == 0

    run()


def _submit_bounded(pool, gate, kind, priority, timeout):
    # overflow="block" with a bounded wait: the interleaving may have filled the
    # queue with jobs held at a closed gate.
    real_submit = pool.submit

    def submit(fn, *args, **kw):
        return real_submit(fn, *args, wait=0.02, **kw)

    pool.submit = submit
    try:
        return _submit(pool, gate, kind, priority, timeout)
    finally:
        del pool.submit
