"""pools.Executor: the concurrent.futures interface over any backend, and CPython's
own executor test suite run against it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pools
from pools.testing import jobs
from pools.testing.jobs import Gate, Latch

T = 30.0
HERE = Path(__file__).resolve().parent
SUITE_DIR = f"/usr/lib/python{sys.version_info[0]}.{sys.version_info[1]}"
SUITE = Path(SUITE_DIR, "test", "test_concurrent_futures.py")


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise jobs.JobFailure(f"no {x}")
    return x * x


def _pid(_: object = None) -> int:
    return os.getpid()


def _kw(a: int, *, b: int) -> int:
    return a - b


def test_is_an_executor_whose_futures_are_the_pools_jobs():
    with pools.Executor("thread", workers=2) as ex:
        assert isinstance(ex, concurrent.futures.Executor)
        fut = ex.submit(_kw, 5, b=2)
        assert isinstance(fut, pools.Job) and isinstance(fut, concurrent.futures.Future)
        assert fut.result(T) == 3
        done, _ = concurrent.futures.wait([fut, ex.submit(pow, 2, 3)], T)
        assert sorted(f.result() for f in done) == [3, 8]
        assert sorted(f.result() for f in concurrent.futures.as_completed([ex.submit(abs, -1)], T)) == [1]
        assert isinstance(ex.pool, pools.Pool) and ex.pool.stats().succeeded == 3
    assert ex.pool.closed
    with pytest.raises(RuntimeError):  # as concurrent.futures: no scheduling after shutdown
        ex.submit(abs, 1)


def test_max_workers_is_workers_and_is_checked():
    with pools.Executor("thread", max_workers=3) as ex:
        assert ex.pool.workers == 3
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        pools.Executor("thread", max_workers=0)
    with pytest.raises(ValueError, match=r"max_workers must be an int greater than 0, got 2\.5"):
        pools.Executor("thread", max_workers=2.5)
    with pytest.raises(pools.InvalidArgument, match="not both"):
        pools.Executor("thread", max_workers=2, workers=2)


def test_queue_is_unbounded_unless_given():
    with pools.Executor("thread", workers=1) as ex, Gate() as gate:
        futures = [ex.submit(jobs.hold, gate, None, i) for i in range(1500)]  # more than Pool's default 1000
        gate.open()
        assert [f.result(T) for f in futures] == list(range(1500))


def test_shutdown_cancel_futures_cancels_what_waits():
    ex = pools.Executor("thread", workers=1)
    with Gate() as gate, Latch() as latch:
        running = ex.submit(jobs.hold, gate, latch, "ran")
        assert latch.wait(1, T)
        waiting = [ex.submit(abs, -i) for i in range(5)]
        threading.Timer(0.05, gate.open).start()
        ex.shutdown(wait=True, cancel_futures=True)
    assert running.result(T) == "ran"
    assert all(f.cancelled() for f in waiting)


def test_map_is_ordered_with_a_timeout_from_the_call():
    with pools.Executor("thread", workers=2) as ex, Gate() as gate:
        assert list(ex.map(pow, [2, 3, 4], [2, 2, 2])) == [4, 9, 16]
        results = ex.map(jobs.hold, [gate, gate], [None, None], ["a", "b"], timeout=0.05)
        with pytest.raises(TimeoutError):
            next(results)
        gate.open()


def _lock_at_two(i: int) -> object:
    return threading.Lock() if i == 2 else i


def test_a_chunk_item_whose_result_cannot_cross_fails_alone():
    with pools.Executor("process", workers=1) as ex:
        results = ex.map(_lock_at_two, range(4), chunksize=4)  # one chunk
        assert [next(results), next(results)] == [0, 1]
        with pytest.raises(pickle.PicklingError, match="cannot be pickled"):
            next(results)
        assert list(ex.map(_lock_at_two, [0, 1, 3], chunksize=4)) == [0, 1, 3]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_map_chunksize_keeps_each_items_result_and_error(backend):
    with pools.Executor(backend, workers=2) as ex:
        results = ex.map(_square_or_fail, range(7), chunksize=3)
        assert [next(results) for _ in range(3)] == [0, 1, 4]  # 3 fails, in the second chunk
        with pytest.raises(jobs.JobFailure, match="no 3") as info:
            next(results)
        if backend == "process":
            assert isinstance(info.value.__cause__, pools.RemoteTraceback)
            assert ex.pool.stats().submitted == 3  # one job per chunk: ceil(7 / 3)
        assert list(ex.map(_square_or_fail, [4, 5, 6, 7, 8], chunksize=2)) == [16, 25, 36, 49, 64]
        with pytest.raises(ValueError, match="chunksize must be >= 1"):
            ex.map(abs, [1], chunksize=0)


def _zero_or_hold(i: int, gate: Gate, latch: Latch) -> int:
    if i:
        latch.arrive()
        gate.wait()
    return i


@pytest.mark.parametrize("backend", ["thread", "process"])
@pytest.mark.parametrize("how", ["closed", "timed out"])
def test_leaving_a_map_cancels_the_calls_not_begun_and_lets_the_running_one_finish(backend, how):
    # concurrent.futures cancels only what has not begun; a pool's own cancel would
    # stop the running call (kill its process, abandon its thread).
    with pools.Executor(backend, workers=1) as ex, Gate() as gate, Latch() as latch:
        if how == "closed":
            results = ex.map(_zero_or_hold, range(5), [gate] * 5, [latch] * 5)
            assert next(results) == 0
            assert latch.wait(1, T)  # the call for 1 runs, held at the gate
            results.close()
        else:
            # every call is held: the first result cannot come before the timeout, however loaded the machine
            results = ex.map(_zero_or_hold, range(1, 6), [gate] * 5, [latch] * 5, timeout=0.2)
            assert latch.wait(1, T)
            with pytest.raises(TimeoutError):
                next(results)
        gate.open()
    s = ex.pool.stats()
    assert (s.cancelled, s.succeeded, s.abandoned) == (3, 2, 0) if how == "closed" else (4, 1, 0), s


def test_run_in_executor():
    async def main(ex: pools.Executor) -> list[int]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(ex, abs, -i) for i in range(4))))

    with pools.Executor("thread", workers=2) as ex:
        assert asyncio.run(main(ex)) == [0, 1, 2, 3]
    with pools.Executor("process", workers=1) as ex:
        assert asyncio.run(main(ex)) == [0, 1, 2, 3]


def _init_fails() -> None:
    raise jobs.JobFailure("bad init")


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_failing_initializer_breaks_the_executor(backend):
    with pools.Executor(backend, workers=2, initializer=_init_fails) as ex:
        try:
            fut = ex.submit(abs, -1)
        except concurrent.futures.BrokenExecutor:
            pass  # broke already
        else:
            with pytest.raises(concurrent.futures.BrokenExecutor) as info:
                fut.result(T)
            assert isinstance(info.value, pools.PoolBroken)
            assert isinstance(info.value.__cause__, jobs.JobFailure)
        with pytest.raises(pools.PoolBroken, match="bad init") as later:
            ex.submit(abs, -1)
        assert isinstance(later.value.__cause__, jobs.JobFailure)
        assert ex._broken


# -------------------------------------------------------------- CPython's suite


@pytest.mark.skipif(
    not SUITE.exists(),
    reason=f"CPython's executor test suite is not installed ({SUITE}): on Debian, "
    f"apt-get install libpython{sys.version_info[0]}.{sys.version_info[1]}-testsuite "
    "(make test does it when run as root)",
)
@pytest.mark.timeout(240)
def test_cpythons_executor_suite_passes_against_pools_executor(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import cpython_executor_suite as runner
    finally:
        sys.path.remove(str(HERE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    # Four shards at once: the suite mostly sleeps (about 65 s in all).
    procs = {}
    for shard in range(4):
        with open(tmp_path / f"{shard}.log", "w") as log:
            procs[shard] = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "cpython_executor_suite.py"),
                    SUITE_DIR,
                    str(tmp_path / f"{shard}.json"),
                    f"{shard}/4",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=HERE.parent,
            )
    deadline = time.monotonic() + 200
    try:
        for proc in procs.values():
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs.values():  # every shard, whichever wait ran out
            proc.kill()
            proc.wait()
    summary: dict = {"ran": 0, "passed": 0, "failed": [], "not_applicable": {}, "skipped_by_suite": {}}
    for shard, proc in procs.items():
        path, log_text = tmp_path / f"{shard}.json", (tmp_path / f"{shard}.log").read_text()
        assert path.exists(), f"no summary from shard {shard} (exit code {proc.returncode}):\n{log_text[-6000:]}"
        part = json.loads(path.read_text())
        assert part["failed"] == [], log_text[-8000:]
        for key in ("ran", "passed"):
            summary[key] += part[key]
        for key in ("not_applicable", "skipped_by_suite"):
            summary[key].update(part[key])
    assert summary["failed"] == []
    # Exactly the tests listed as not applicable were skipped as such, each with its reason.
    listed = {f"{cls}.{test}" for cls, test in runner.NOT_APPLICABLE if cls != "*"} | {
        n for n in summary["not_applicable"] if n.split(".")[1] in {t for c, t in runner.NOT_APPLICABLE if c == "*"}
    }
    assert set(summary["not_applicable"]) == listed
    assert all(summary["not_applicable"].values())
    assert set(summary["skipped_by_suite"]) <= {
        "test.test_concurrent_futures.ProcessPoolForkserverProcessPoolExecutorTest.test_max_workers_too_large"
    }
    assert summary["passed"] == summary["ran"] - len(summary["not_applicable"]) - len(summary["skipped_by_suite"])
    assert summary["passed"] >= 40, summary  # 43 with Python 3.11's suite
