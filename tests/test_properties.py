"""Property-based: random interleavings of submit, cancel, timeout, failure, crash,
resize, worker recycling and shutdown keep the conservation law at every step and end every accepted job
in exactly one terminal state."""

import collections
import concurrent.futures

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pools
from pools._registry import backend_class
from pools.testing import jobs
from pools.testing.jobs import Gate, job_for

T = 30.0
# backend -> what its examples did, summed: checked at the end of the test, so that
# examples that exercise nothing (every submit refused, no cancel taking effect)
# cannot pass unnoticed
TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
EXAMPLES = {"thread": 80, "asyncio": 60, "process": 25}

kinds = st.sampled_from(["ok", "fail", "hold", "stopped", "retry", "crash"])
submit = st.tuples(
    st.just("submit"),
    kinds,
    st.integers(-2, 2),  # priority
    # timeout: 1 ms ends any held job soon after it starts, so that timeouts happen
    # within an example's short life (with 50 ms alone they were rare: the tally below)
    st.sampled_from([None, None, 0.001, 0.05]),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 40))
# Not below 2: a probe without a deadline ("stopped") holds its worker until shutdown,
# and on a single worker the jobs behind it could only wait out the bound below (30 s).
resize = st.tuples(st.just("resize"), st.integers(2, 3))
ops = st.lists(
    st.one_of(submit, submit, submit, submit, cancel, cancel, resize, st.just(("open",))),
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
        recycle=st.sampled_from([None, None, 1, 2]),  # max_tasks_per_worker, where it applies
    )
    # Besides the random ones, one example of each kind of event, so that the tally
    # below fails only when the pool did not produce it: a job running into its
    # timeout, a retry, a failure, a crash (where crashes are survivable), a cancel
    # that takes effect and a success; a full unbuffered queue; a closed pool.
    @example(
        ops=[
            ("submit", "stopped", 0, 0.001),
            ("submit", "retry", 0, None),
            ("submit", "fail", 0, None),
            ("submit", "crash", 0, None),
            ("submit", "hold", 0, None),
            ("cancel", 4),
            ("resize", 2),
            ("open",),
            ("submit", "ok", 0, None),
            ("resize", 3),
            ("submit", "ok", 0, None),
        ],
        shutdown_at=None,
        workers=3,
        queue_size=4,
        overflow="block",
        recycle=1,
    )
    @example(
        ops=[("submit", "hold", 0, None), ("submit", "ok", 0, None)],
        shutdown_at=None,
        workers=1,
        queue_size=0,
        overflow="reject",
        recycle=None,
    )
    @example(
        ops=[("submit", "ok", 0, None), ("resize", 2)],
        shutdown_at=0,
        workers=1,
        queue_size=1,
        overflow="reject",
        recycle=None,
    )
    def run(ops, shutdown_at, workers, queue_size, overflow, recycle):
        recycles = backend_class(pool_backend).capabilities.why_not("max_tasks_per_worker") is None
        pool = pools.create_pool(
            pool_backend,
            workers=workers,
            queue_size=queue_size,
            overflow=overflow,
            max_tasks_per_worker=recycle if recycles else None,
        )
        tally = TALLY[pool_backend]
        tally["crash-safe"] = pool.capabilities.survives_crashes
        tally["recycles"] = recycles
        accepted = []
        ends_alone = []  # every kind but a probe without a deadline ends by itself once the gate opens
        never_end = []  # ... which, running, may hold the only worker: jobs behind it never start
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
                            if op[1] != "stopped" or op[3] is not None:
                                ends_alone.append(accepted[-1])
                            else:
                                never_end.append(accepted[-1])
                        except pools.QueueFull:
                            tally["refused: queue full"] += 1
                        except pools.PoolClosed:
                            tally["refused: pool closed"] += 1
                    elif op[0] == "cancel" and accepted:
                        tally["cancel took effect"] += accepted[op[1] % len(accepted)].cancel()
                    elif op[0] == "open":
                        gate.open()
                    elif op[0] == "resize":
                        try:
                            pool.resize(op[1])
                            tally["resized"] += 1
                        except pools.PoolClosed:
                            tally["refused: pool closed"] += 1
                    assert pool.stats().conserved(), pool.stats()
                gate.open()
                # Every accepted job may end before the shutdown's short deadline: on a
                # loaded machine a crash or a retry could otherwise be cancelled before
                # it ran, and the tally below would miss it (shutdown_at covers a
                # shutdown that stops running jobs). The probes that never end are
                # cancelled first, or the jobs queued behind them would wait out T.
                for job in never_end:
                    job.cancel()
                concurrent.futures.wait(ends_alone, T)
                report = pool.shutdown(timeout=0.1)
            finally:
                gate.open()
                pool.shutdown(timeout=T)
        concurrent.futures.wait(accepted, T)
        tally["accepted"] += len(accepted)
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
        tally.update(by_state)
        tally.update(retried=s.retried, crashed=s.crashed, recycled=s.recycled)

    TALLY.pop(pool_backend, None)
    run()
    seen = TALLY[pool_backend]
    wanted = [
        "accepted",
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
        "retried",
        "cancel took effect",
        "refused: queue full",
        "refused: pool closed",
        "resized",
    ]
    wanted += (["crashed"] if seen["crash-safe"] else []) + (["recycled"] if seen["recycles"] else [])
    never = [what for what in wanted if not seen[what]]
    assert not never, f"no example of {pool_backend} exercised: {', '.join(never)} (tally: {dict(seen)})"


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
