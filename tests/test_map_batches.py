"""``Pool.map`` in batches where jobs cross to another process (``pools._batch``):
the sizing policy alone, then real process pools."""

from __future__ import annotations

import pickle
import threading

import pytest

import pools
from pools._batch import BatchSizer
from pools.testing import jobs
from pools.testing.jobs import Gate

# ------------------------------------------------------------------ the sizing policy


def test_single_items_until_a_batch_has_been_measured():
    sizer = BatchSizer(2, 5000)
    assert [sizer.next_size() for _ in range(3)] == [1, 1, 1]
    assert sizer.in_flight() == 8


def test_a_batch_holds_about_the_target_time_of_work():
    sizer = BatchSizer(2, None, target=0.01)
    sizer.observe(0.004, 2)  # 2 ms an item
    assert sizer.next_size() == 5
    sizer.observe(0.0, 2)  # 1 ms an item over the four measured
    assert sizer.next_size() == 10
    slow = BatchSizer(2, None, target=0.01)
    slow.observe(0.5, 1)  # items slower than the target: one a job
    assert slow.next_size() == 1
    fast = BatchSizer(2, None, target=0.01, most=10_000)
    fast.observe(1e-6, 1)
    assert fast.next_size() == 10_000  # capped


def test_batches_shrink_toward_the_end_of_a_known_input_but_keep_a_least_amount_of_work():
    sizer = BatchSizer(2, 1000, target=1.0, least=0.001)
    sizer.observe(1e-5, 1)  # 10 us an item: the target alone would take everything
    sizes = []
    while sizer.remaining:
        size = min(sizer.next_size(), sizer.remaining)
        sizes.append(size)
        sizer.sent(size)
    assert sizes[0] == 250  # remaining over twice the workers
    assert sizes == sorted(sizes, reverse=True)
    assert min(sizes[:-1]) >= 100  # never below 1 ms of work (but for what is left at the end)
    assert sum(sizes) == 1000


# ------------------------------------------------------------------ on a process pool


def _double_or_fail(x: int) -> int:
    if x == 777:
        raise jobs.JobFailure(f"no {x}")
    return 2 * x


def _lock_at(x: int, at: int) -> object:
    return threading.Lock() if x == at else x


def test_a_map_of_small_items_sends_far_fewer_jobs_than_items_and_keeps_the_order():
    with pools.create_pool("process", workers=2) as pool:
        assert list(pool.map(abs, range(-5000, 0))) == list(range(5000, 0, -1))
        s = pool.stats()
        assert s.submitted < 100 and s.succeeded == s.submitted, s
        # two iterables, and an iterator whose length is not known
        assert list(pool.map(jobs.add, range(300), range(300))) == list(range(0, 600, 2))
        assert list(pool.map(abs, iter(range(-300, 0)))) == list(range(300, 0, -1))


def test_an_items_error_is_raised_at_its_turn_with_the_workers_traceback():
    with pools.create_pool("process", workers=2) as pool:
        results = pool.map(_double_or_fail, range(2000))
        assert [next(results) for _ in range(777)] == [2 * x for x in range(777)]
        with pytest.raises(jobs.JobFailure, match="no 777") as info:
            next(results)
        assert isinstance(info.value.__cause__, pools.RemoteTraceback)
        assert "_double_or_fail" in str(info.value.__cause__)
    s = pool.stats()  # shut down: every batch ended, those not needed cancelled
    assert s.queued == s.busy == 0 and s.failed == 0 and s.submitted == s.succeeded + s.cancelled, s


def test_an_item_whose_result_cannot_cross_fails_alone():
    with pools.create_pool("process", workers=1) as pool:
        results = pool.map(_lock_at, range(3000), [1500] * 3000)
        assert [next(results) for _ in range(1500)] == list(range(1500))
        with pytest.raises(pickle.PicklingError, match="cannot be pickled"):
            next(results)
        results.close()


def test_slow_items_are_never_bundled():
    with pools.create_pool("process", workers=2) as pool:
        assert list(pool.map(jobs.sleep, [0.02] * 6)) == [0.02] * 6
        assert pool.stats().submitted == 6


def test_with_a_timeout_or_a_retry_each_item_is_its_own_job():
    with pools.create_pool("process", workers=2) as pool:
        assert list(pool.map(abs, range(50), timeout=30)) == list(range(50))
        assert list(pool.map(abs, range(50), retry=pools.Retry(attempts=2))) == list(range(50))
        assert pool.stats().submitted == 100


def _zero_or_hold(i: int, gate: Gate) -> int:
    if i:
        gate.wait()
    return i


def test_leaving_a_map_early_cancels_the_batches_in_flight():
    with pools.create_pool("process", workers=1) as pool, Gate() as gate:
        results = pool.map(_zero_or_hold, range(100), [gate] * 100)
        assert next(results) == 0  # item 1 is running, held at the gate; more wait behind it
        results.close()
        s = pool.stats()
        assert s.cancelled >= 2 and s.queued == 0, s  # the running batch stopped, the waiting ones too
    s = pool.stats()
    assert s.busy == 0 and s.succeeded == 1 and s.submitted == s.succeeded + s.cancelled, s


def test_the_thread_backend_runs_one_job_an_item():
    with pools.create_pool("thread", workers=2) as pool:
        assert not pool.capabilities.batches_map
        assert list(pool.map(abs, range(-20, 0))) == list(range(20, 0, -1))
        assert pool.stats().submitted == 20


def test_the_counters_count_batches_and_a_single_items_error_fails_its_job():
    # the first batches hold one item: the failure is its job's, as without batches
    with pools.create_pool("process", workers=1, queue_size=4) as pool, Gate() as gate:
        with pytest.raises(jobs.JobFailure, match="first"):
            list(pool.map(jobs.fail_or_hold, ["first", "second"], [None, gate]))
        s = pool.stats()
        assert (s.submitted, s.failed, s.cancelled) == (2, 1, 1), s
