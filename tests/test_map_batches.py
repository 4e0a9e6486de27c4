"""``Pool.map`` in batches where jobs cross to another process (``pools._batch``):
the sizing policy alone, then real process pools."""

from __future__ import annotations

import functools
import os
import pickle
import threading

import pytest

import pools
from pools._batch import BatchSizer
from pools.testing import jobs
from pools.testing.jobs import Gate, Latch

# ------------------------------------------------------------------ the sizing policy


def test_single_items_until_a_batch_has_been_measured():
    sizer = BatchSizer(2, 5000)
    assert [sizer.next_size() for _ in range(3)] == [1, 1, 1]
    assert sizer.in_flight() == 8


def test_a_batch_holds_about_the_target_time_of_work_growing_at_most_fourfold():
    sizer = BatchSizer(2, None, target=0.01)
    sizer.observe(0.004, 2)  # 2 ms an item
    assert sizer.next_size() == 5
    slow = BatchSizer(2, None, target=0.01)
    slow.observe(0.5, 1)  # items slower than the target: one a job
    assert slow.next_size() == 1
    fast = BatchSizer(2, None, target=0.01, most=10_000)
    fast.observe(1e-6, 1)
    assert fast.next_size() == 4  # one fast item does not size a batch of 10,000
    sizes = [1]
    for _ in range(10):
        fast.observe(1e-6 * sizes[-1], sizes[-1])
        sizes.append(fast.next_size())
    assert sizes == [1, 4, 16, 64, 256, 1024, 4096, 10_000, 10_000, 10_000, 10_000]  # then capped


def test_the_estimate_follows_items_whose_cost_drifts():
    sizer = BatchSizer(1, None, target=0.01)
    sizer.observe(1e-6 * 1000, 1000)  # 1 us an item
    assert sizer.next_size() == 4000
    for _ in range(4):
        sizer.observe(0.001 * 10, 10)  # then 1 ms an item: a decaying average, not all history
    assert sizer.next_size() <= 12


def test_a_batch_carries_at_most_most_bytes():
    sizer = BatchSizer(1, None, target=1.0, most_bytes=1 << 20)
    sizer.observe(1e-6 * 1000, 1000, nbytes=1000 * 10_000)  # 10 kB an item
    assert sizer.next_size() == (1 << 20) // 10_000


def test_batches_shrink_toward_the_end_of_a_known_input_but_keep_a_least_amount_of_work():
    sizer = BatchSizer(2, 2000, target=1.0, least=0.001)
    sizer.observe(1e-5 * 250, 250)  # 10 us an item: the target alone would take everything
    sizes = []
    while sizer.remaining:
        size = min(sizer.next_size(), sizer.remaining)
        sizes.append(size)
        sizer.sent(size)
    assert sizes[0] == 500  # remaining over twice the workers
    assert sizes == sorted(sizes, reverse=True)
    assert min(sizes[:-1]) >= 100  # never below 1 ms of work (but for what is left at the end)
    assert sum(sizes) == 2000


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
        with pytest.raises(pickle.PicklingError, match="item 1500 of map returned lock that cannot be pickled"):
            next(results)
        results.close()


def test_slow_items_are_never_bundled():
    with pools.create_pool("process", workers=2) as pool:
        # more items than the batches in flight: the later ones are sized by measurement
        assert list(pool.map(jobs.sleep, [0.02] * 20)) == [0.02] * 20
        assert pool.stats().submitted == 20


def _exit_at(x: int, at: int) -> int:
    if x == at:
        raise SystemExit(f"item {x} exits")
    return x


class _BreaksInParent:
    """Pickles in the worker, cannot be rebuilt in the pool (its process id differs)."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def __reduce__(self):
        return (_rebuild, (self.parent,))


def _rebuild(parent: int) -> _BreaksInParent:
    if os.getpid() == parent:
        raise RuntimeError("cannot be rebuilt in the parent")
    return _BreaksInParent(parent)


def _breaks_at(x: int, at: int, parent: int) -> object:
    return _BreaksInParent(parent) if x == at else x


def test_an_items_base_exception_fails_that_item_alone():
    with pools.create_pool("process", workers=1) as pool:
        results = pool.map(_exit_at, range(3000), [1500] * 3000)
        assert [next(results) for _ in range(1500)] == list(range(1500))
        with pytest.raises(SystemExit, match="item 1500 exits"):
            next(results)
        results.close()
        assert pool.stats().crashed == 0


def test_a_value_that_cannot_be_rebuilt_in_the_pool_fails_alone():
    with pools.create_pool("process", workers=1) as pool:
        results = pool.map(_breaks_at, range(3000), [1500] * 3000, [os.getpid()] * 3000)
        assert [next(results) for _ in range(1500)] == list(range(1500))
        with pytest.raises(
            pickle.UnpicklingError, match=r"item 1500 of map returned a value that cannot be unpickled here"
        ) as info:
            next(results)
        assert "cannot be rebuilt in the parent" in str(info.value.__cause__)
        results.close()


def test_an_argument_that_cannot_be_pickled_is_named():
    with (
        pools.create_pool("process", workers=1) as pool,
        pytest.raises(pools.InvalidCallable, match=r"map sends its items to the 'process' workers in batches"),
    ):
        list(pool.map(jobs.echo, [threading.Lock()]))


def test_with_a_timeout_or_a_retry_each_item_is_its_own_job():
    with pools.create_pool("process", workers=2) as pool:
        assert list(pool.map(abs, range(50), timeout=30)) == list(range(50))
        assert list(pool.map(abs, range(50), retry=pools.Retry(attempts=2))) == list(range(50))
        assert pool.stats().submitted == 100


def _zero_or_hold(i: int, gate: Gate, latch: Latch) -> int:
    if i:
        latch.arrive()
        gate.wait()
    return i


def test_leaving_a_map_early_cancels_the_batches_in_flight():
    with pools.create_pool("process", workers=1) as pool, Gate() as gate, Latch() as latch:
        results = pool.map(_zero_or_hold, range(100), [gate] * 100, [latch] * 100)
        assert next(results) == 0
        assert latch.wait(1, 30)  # item 1 runs, held at the gate; items 2 and 3 wait behind it
        results.close()
        s = pool.stats()
        assert (s.cancelled, s.queued, s.succeeded) == (3, 0, 1), s  # the running batch stopped too
    s = pool.stats()
    assert s.busy == 0 and s.submitted == 4, s


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


def _len_plus(ballast: bytes, x: int) -> int:
    return len(ballast) + x


def test_a_large_function_is_sent_once_a_map_and_does_not_stop_the_batching():
    big = functools.partial(_len_plus, b"x" * (2 << 20))  # 2 MiB: pickled with the function
    with pools.create_pool("process", workers=2) as pool:
        assert list(pool.map(big, range(3000))) == [(2 << 20) + x for x in range(3000)]
        assert pool.stats().submitted < 300  # batches still grow: the function's bytes are not the items'


def test_a_single_items_value_that_cannot_be_pickled_fails_its_job():
    with pools.create_pool("process", workers=1) as pool:
        with pytest.raises(pickle.PicklingError, match="item 0 of map returned lock"):
            list(pool.map(_lock_at, [0], [0]))
        assert pool.stats().failed == 1
