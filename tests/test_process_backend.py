"""What only the process backend does: pickling, killing, crash storms."""

import time

import pytest

import pools
from pools.testing import jobs, process_alive

T = 30.0


def getpid_then_sleep(seconds):
    pools.current_context()  # works in the child too
    time.sleep(seconds)


def test_unpicklable_callable_is_refused_at_submit(make_pool):
    pool = make_pool("process", workers=1)
    with pytest.raises(pools.InvalidCallable, match="pickle") as info:
        pool.submit(lambda: 1)
    assert "top level of a module" in str(info.value)
    with pytest.raises(pools.InvalidCallable, match="pickle"):
        pool.submit(jobs.echo, jobs.threading.Lock())
    assert pool.stats().submitted == 0


def test_unpicklable_result_fails_the_job_not_the_pool(make_pool):
    pool = make_pool("process", workers=1)
    with pytest.raises(Exception, match="cannot be pickled"):
        pool.submit(jobs.unpicklable_result).result(T)
    assert pool.submit(jobs.echo, 1).result(T) == 1


def test_timeout_kills_a_job_that_never_looks_at_its_context(make_pool):
    pool = make_pool("process", workers=1)
    job = pool.submit(jobs.context_info)
    first_pid = job.result(T)["pid"]
    slow = pool.submit(getpid_then_sleep, 3600, timeout=0.2)
    with pytest.raises(pools.JobTimeout):
        slow.result(T)
    assert not process_alive(first_pid), "the worker running the job was not killed"
    assert pool.submit(jobs.context_info).result(T)["pid"] != first_pid


def test_cancel_kills_the_running_worker(make_pool):
    pool = make_pool("process", workers=1)
    with jobs.Latch() as latch:
        job = pool.submit(jobs.until_stopped, latch)
        assert latch.wait(1, T)
        pid = None
        assert job.cancel()
    pid = pool.submit(jobs.context_info).result(T)["pid"]
    assert pool.stats().cancelled == 1 and process_alive(pid)


def test_worker_traceback_is_the_cause(make_pool):
    pool = make_pool("process", workers=1)
    with pytest.raises(jobs.JobFailure) as info:
        pool.submit(jobs.fail, "remote").result(T)
    cause = info.value.__cause__
    assert isinstance(cause, pools.RemoteTraceback)
    assert 'in fail' in cause.tb and "JobFailure: remote" in cause.tb


def test_a_hundred_crashes_in_a_row(make_pool):
    pool = make_pool("process", workers=2)
    crashes = [pool.submit(jobs.exit_now, 7) for _ in range(100)]
    for job in crashes:
        with pytest.raises(pools.WorkerCrashed) as info:
            job.result(T * 2)
        assert info.value.exitcode == 7
    s = pool.stats()
    assert (s.crashed, s.failed) == (100, 100)
    assert list(pool.map(jobs.add, range(50), range(50))) == [2 * i for i in range(50)]
    assert len({pool.submit(jobs.context_info).result(T)["pid"] for _ in range(4)}) <= 2


def test_start_method_is_checked():
    with pytest.raises(pools.InvalidArgument, match="start_method"):
        pools.create_pool("process", start_method="teleport")


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_other_start_methods_work(make_pool, method):
    pool = make_pool("process", workers=1, start_method=method)
    assert pool.submit(jobs.add, 2, 3).result(T) == 5
    with pytest.raises(pools.JobTimeout):
        pool.submit(getpid_then_sleep, 3600, timeout=0.2).result(T)


class RefusesToUnpickle:
    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise RuntimeError("cannot be rebuilt here")


def returns_refuser():
    import multiprocessing

    if multiprocessing.parent_process() is None:  # in the parent: refuse to be rebuilt
        return None
    return RefusesToUnpickle()


def test_a_result_the_parent_cannot_unpickle_fails_only_its_job(make_pool):
    pool = make_pool("process", workers=2)
    with jobs.Latch() as latch, jobs.Gate() as gate:
        other = pool.submit(jobs.hold, gate, latch, "other")
        assert latch.wait(1, T)
        with pytest.raises(Exception, match="cannot be"):
            pool.submit(returns_refuser).result(T)
        gate.open()
        assert other.result(T) == "other"
