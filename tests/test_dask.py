"""The dask backend: the conformance suite against a LocalCluster on 127.0.0.1, and what
only a cluster has — who owns it, tasks that outlive their job, crashes of worker
processes, priorities on the scheduler, the optional extra, and the `dask` CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import importlib.util
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref

import pytest

import pools
from pools import InvalidArgument, InvalidCallable, JobTimeout, Retry, WorkerCrashed
from pools.testing import jobs
from pools.testing.conformance import PoolConformance
from pools.testing.jobs import Gate, Latch

pytest.importorskip("distributed")

from pools.dask._cluster import LocalClusterProcess

T = 30.0
THREADS = 4  # of the shared cluster


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster (threads, on 127.0.0.1) in a child process, for the whole module:
    it exists before each test's leak snapshot, and each test's pools connect to it."""
    local = LocalClusterProcess(THREADS, processes=False)
    yield local.address
    local.close()


class TestDaskConformance(PoolConformance):
    """Every lifecycle point, on pools given the shared cluster by address."""

    backends = ("dask",)

    @pytest.fixture
    def make_pool(self, make_pool, cluster):
        def factory(backend=None, **options):
            if backend in (None, "dask"):
                options.setdefault("address", cluster)
            return make_pool(backend, **options)

        return factory


# ------------------------------------------------------------------ registry, options


def test_dask_is_an_available_backend():
    assert "dask" in pools.available_backends()
    from pools._registry import backend_class

    assert backend_class("dask").__name__ == "DaskBackend"


def test_without_the_extra_it_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    assert "dask" not in pools.available_backends()
    assert "dask" in pools.registered_backends()
    with pytest.raises(pools.BackendUnavailable, match=r"pip install 'poolbench\[dask\]'"):
        pools.create_pool("dask")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"address": 8786}, ["address", "8786", "tcp://"]),
        ({"address": ""}, ["address", "''"]),
        ({"processes": "yes"}, ["processes", "'yes'"]),
        ({"address": "tcp://127.0.0.1:8786", "processes": True}, ["processes=", "tcp://127.0.0.1:8786"]),
        ({"connect_timeout": 0}, ["connect_timeout", "0"]),
    ],
)
def test_bad_dask_options_raise_at_once(options, words):
    with pytest.raises(InvalidArgument) as info:
        pools.create_pool("dask", **options)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_an_unreachable_scheduler_fails_start_with_pool_broken():
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = pools.create_pool("dask", address=f"tcp://127.0.0.1:{port}", workers=1, connect_timeout=0.5)
    with pytest.raises(pools.PoolBroken, match=f"127.0.0.1:{port}"):
        pool.submit(jobs.echo, 1)
    assert pool.closed


# ------------------------------------------------------------------ what crosses the wire


def test_callables_cross_by_cloudpickle(make_pool, cluster):
    pool = make_pool("dask", address=cluster, workers=2)
    offset = 40
    assert pool.submit(lambda x: x + offset, 2).result(T) == 42  # a closure: fine with cloudpickle
    with pytest.raises(InvalidCallable, match="cannot be pickled"):
        pool.submit(jobs.echo, threading.Lock())  # refused at submit, not on the cluster
    with pytest.raises(InvalidCallable, match=r"asyncio\.run"):
        pool.submit(jobs.aecho, 1)
    with pytest.raises(pickle.PicklingError):
        pool.submit(jobs.unpicklable_result).result(T)  # fails its own job only
    assert pool.submit(jobs.echo, "still serving").result(T) == "still serving"
    assert pool.stats().submitted == 3


def test_workers_default_to_four_jobs_per_thread_of_the_cluster(make_pool, cluster):
    pool = make_pool("dask", address=cluster)
    pool.start()
    assert pool.workers == 4 * THREADS  # each thread finds its next task on its worker
    info = pool.submit(jobs.context_info).result(T)
    assert info["pid"] != os.getpid()  # the job ran in the cluster's process
    assert pool.stats().workers == 4 * THREADS


def test_at_most_workers_jobs_are_on_the_cluster(make_pool, cluster):
    # More jobs than threads go to the cluster (they wait there for a thread), but never
    # more than `workers`; the rest wait in the pool's own queue, where priorities hold.
    workers = THREADS + 2
    pool = make_pool("dask", address=cluster, workers=workers, queue_size=20)
    with Gate() as gate, Latch() as latch:
        held = [pool.submit(jobs.hold, gate, latch, i) for i in range(12)]
        assert latch.wait(THREADS, T)  # every thread of the cluster runs one
        _dispatched(pool)

        def pool_tasks(prefix, dask_scheduler=None):
            return sum(1 for key in dask_scheduler.tasks if str(key).startswith(prefix))

        async def on_cluster():
            return await pool.impl._client.run_on_scheduler(pool_tasks, f"poolbench-{pool.impl._token}-")

        assert asyncio.run_coroutine_threadsafe(on_cluster(), pool.impl._loop).result(T) == workers
        s = pool.stats()
        assert (s.busy, s.queued) == (workers, 12 - workers) and s.conserved()
        assert sum(job.running() for job in held) == workers
        urgent = pool.submit(jobs.echo, "urgent", priority=9)
        gate.open()
        assert [job.result(T) for job in held] == list(range(12))
        assert urgent.result(T) == "urgent"
    s = pool.stats()
    assert (s.succeeded, s.busy, s.queued) == (13, 0, 0) and s.conserved()


def test_small_and_large_outcomes_come_back(make_pool, cluster):
    # A small outcome is pushed with the task's completion; a large one (> 8 KiB) is
    # fetched from the worker; failures travel both ways too.
    pool = make_pool("dask", address=cluster, workers=2)
    big = "x" * 100_000
    assert pool.submit(jobs.echo, "small").result(T) == "small"
    assert pool.submit(jobs.echo, big).result(T) == big
    with pytest.raises(jobs.JobFailure, match="small failure"):
        pool.submit(jobs.fail, "small failure").result(T)
    with pytest.raises(jobs.JobFailure, match="y" * 20_000):
        pool.submit(jobs.fail, "y" * 20_000).result(T)
    many = [pool.submit(jobs.echo, i if i % 3 else big) for i in range(30)]
    assert [job.result(T) for job in many] == [i if i % 3 else big for i in range(30)]
    s = pool.stats()
    assert (s.succeeded, s.failed) == (32, 2) and s.conserved()


def test_shutdown_drops_the_pushed_outcomes_from_the_scheduler(make_pool, cluster):
    pool = make_pool("dask", address=cluster, workers=2)
    topic = f"poolbench-{pool.start().impl._token}"
    assert [job.result(T) for job in [pool.submit(jobs.echo, i) for i in range(5)]] == list(range(5))

    def count(topic, dask_scheduler=None):
        return len(dask_scheduler.get_events(topic))

    def events_on(some_pool):
        async def ask():
            return await some_pool.impl._client.run_on_scheduler(count, topic)

        return asyncio.run_coroutine_threadsafe(ask(), some_pool.impl._loop).result(T)

    assert events_on(pool) == 5  # the scheduler keeps them while the pool lives
    pool.shutdown()
    other = make_pool("dask", address=cluster, workers=1)
    other.start()
    assert events_on(other) == 0


def test_priority_is_dasks_priority(make_pool, cluster):
    pool = make_pool("dask", address=cluster, workers=2)
    with Gate() as gate, Latch() as latch:
        low = pool.submit(jobs.hold, gate, latch, priority=-3)
        high = pool.submit(jobs.hold, gate, latch, priority=7)
        assert latch.wait(2, T)

        def priorities(keys, dask_scheduler=None):
            return {key: dask_scheduler.tasks[key].priority for key in keys}

        async def ask(keys):  # through the pool's own client, on its loop
            return await pool.impl._client.run_on_scheduler(priorities, keys)

        keys = [low.backend_slot.key, high.backend_slot.key]
        got = asyncio.run_coroutine_threadsafe(ask(keys), pool.impl._loop).result(T)
        gate.open()
        assert got[keys[0]][0] == 3 and got[keys[1]][0] == -7  # Dask stores -priority first
        concurrent.futures.wait([low, high], T)


# ------------------------------------------------------------------ tasks that outlive their job


def test_timeout_abandons_a_task_that_ignores_its_context(make_pool, cluster):
    pool = make_pool("dask", address=cluster, workers=1)
    with Gate() as gate, Latch() as latch:
        job = pool.submit(jobs.hold, gate, latch, "late", timeout=0.2)  # never looks at its context
        assert latch.wait(1, T)
        with pytest.raises(JobTimeout):
            job.result(T)
        s = pool.stats()
        assert (s.timed_out, s.busy, s.abandoned) == (1, 0, 1)  # the task still runs on the cluster
        assert pool.submit(jobs.echo, "next").result(T) == "next"  # the pool's slot is free
        assert pool.stats().abandoned == 1
        gate.open()  # now the task returns, and Dask reports it finished
        report = pool.shutdown(timeout=T)
    assert report.abandoned_threads == 0
    assert pool.stats().abandoned == 0 and job.status == "timed_out"


def test_shutdown_reports_tasks_left_running_on_a_given_cluster(make_pool, cluster):
    pool = make_pool("dask", address=cluster, workers=1)
    with Gate() as gate, Latch() as latch:
        job = pool.submit(jobs.hold, gate, latch)
        assert latch.wait(1, T)
        report = pool.shutdown(timeout=0.05)  # + CANCEL_GRACE for the task, which ignores it
        assert report.killed == (job.job_id,) and job.cancelled()
        assert report.abandoned_threads == 1  # still on the cluster, which is not ours to close
        gate.open()


def test_cancel_reaches_a_task_still_waiting_on_a_worker(make_pool, cluster, tmp_path):
    # Blockers time out but hold every thread of the cluster, so `waiting` is dispatched
    # yet cannot start. Cancelling it must keep its function from ever running on,
    # whether the cancel reaches the worker before it starts or while it runs.
    pool = make_pool("dask", address=cluster, workers=THREADS)
    marker = tmp_path / "ran-on"
    with Gate() as gate, Latch() as latch:
        blockers = [pool.submit(jobs.hold, gate, latch, timeout=0.2) for _ in range(THREADS)]
        assert latch.wait(THREADS, T)
        for blocker in blockers:
            with pytest.raises(JobTimeout):
                blocker.result(T)
        waiting = pool.submit(jobs.until_stopped, None, str(marker))
        _dispatched(pool)
        assert waiting.running()  # on the cluster, queued behind the abandoned tasks
        assert waiting.cancel() is True
        assert pool.stats().abandoned == THREADS + 1
        gate.open()
        report = pool.shutdown(timeout=T)
    assert report.abandoned_threads == 0  # it ended: on a given cluster, one left running would count
    assert pool.stats().abandoned == 0
    assert not marker.exists()


def _dispatched(pool) -> None:
    """Return once the pool's loop has dispatched what was submitted before the call:
    a submit schedules the dispatcher on that loop before this no-op."""
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), pool.impl._loop).result(T)


def test_the_pool_owns_and_closes_the_cluster_it_started():
    with pools.create_pool("dask", workers=2) as pool:
        info = pool.submit(jobs.context_info).result(T)
        helper = pool.impl._cluster.proc
        assert info["pid"] not in (os.getpid(), None) and helper.poll() is None
        assert not pool.capabilities.survives_crashes and "processes=False" in pool.capabilities.no_crash_recovery
        assert pool.submit(print, "x" * 200_000).result(T) is None  # job output goes to our stdout
    assert helper.poll() is not None  # closed with the pool (and the leak check agrees)


def test_a_given_cluster_is_never_closed(cluster):
    for _ in range(2):  # the second pool finds the cluster still serving
        with pools.create_pool("dask", address=cluster, workers=1) as pool:
            assert pool.submit(jobs.echo, "up").result(T) == "up"
        assert pool.impl._cluster is None


def test_capabilities_of_a_given_cluster_are_learnt_when_it_starts(make_pool, cluster):
    pool = make_pool("dask", address=cluster, workers=1)
    caps = pool.capabilities  # a plain value: reading it starts nothing
    assert not caps.survives_crashes and "start() it first" in caps.no_crash_recovery
    assert " new " in repr(pool) and not caps.reports_exit_status and caps.runs == "callables"
    pool.start()
    caps = pool.capabilities  # the shared cluster: threads of one worker, no nanny
    assert not caps.survives_crashes and "without a nanny" in caps.no_crash_recovery
    assert not caps.reports_exit_status and not caps.stops_running_jobs and not caps.carries_contextvars


def test_a_done_callback_may_block_on_the_pool(make_pool, cluster):
    # Done-callbacks run on the pool's callback thread, not on the loop thread that
    # delivers every result: one may wait for room in a full queue, and for other jobs.
    pool = make_pool("dask", address=cluster, workers=1, queue_size=0, overflow="block")
    seen: list[object] = []
    done = threading.Event()

    def callback(_job):
        try:
            first = pool.submit(jobs.echo, "took the free slot")
            second = pool.submit(jobs.echo, "waited for room")  # blocks until the first ends
            seen.extend([first.result(T), second.result(T), threading.current_thread().name])
        finally:
            done.set()

    with Gate() as gate:
        job = pool.submit(jobs.hold, gate)
        job.add_done_callback(callback)  # added before it can end: runs when the loop delivers it
        gate.open()
        assert done.wait(T)
    assert seen == ["took the free slot", "waited for room", f"{pool.name}-callbacks"]


# ------------------------------------------------------------------ worker processes


def test_a_crashed_worker_process_fails_its_job_with_worker_crashed():
    with pools.create_pool("dask", workers=1, processes=True) as pool:
        assert pool.capabilities.survives_crashes and pool.capabilities.no_crash_recovery is None
        job = pool.submit(jobs.exit_now)
        with pytest.raises(WorkerCrashed, match="KilledWorker") as info:
            job.result(T)
        assert info.value.job_id == job.job_id and info.value.exitcode is None
        assert pool.submit(jobs.echo, "restarted").result(T) == "restarted"  # the nanny's new worker
        retried = pool.submit(jobs.crash_until, 2, "survived", retry=Retry(attempts=2, backoff=0, on=(WorkerCrashed,)))
        assert retried.result(T) == ("survived", 2)
        s = pool.stats()
        assert (s.crashed, s.failed, s.retried, s.succeeded) == (2, 1, 1, 2)


# ------------------------------------------------------------------ a cluster from the dask CLI


def _start(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], start_new_session=True, **kw)


def _read_until(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    """Read the process's stderr line by line until one contains ``needle``."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([proc.stderr], [], [], remaining)[0]:
            raise AssertionError(f"no {needle!r} within {timeout}s: {buf.decode(errors='replace')}")
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            raise AssertionError(f"exited before {needle!r}: {buf.decode(errors='replace')}")
        buf += chunk
        for line in buf.decode(errors="replace").splitlines():
            if needle in line:
                return line


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(T)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_cluster_started_with_the_dask_cli():
    # What the README shows: `dask scheduler`, then `dask worker ADDRESS` (here on loopback).
    loopback = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    scheduler = _start(["distributed.cli.dask_scheduler", "--port", "0", *loopback], stderr=subprocess.PIPE)
    worker = None
    try:
        line = _read_until(scheduler, "Scheduler at:", T)
        address = line.split("Scheduler at:")[1].strip()
        worker = _start(
            ["distributed.cli.dask_worker", address, "--nthreads", "2", *loopback], stderr=subprocess.DEVNULL
        )
        with pools.create_pool("dask", address=address) as pool:
            assert pool.submit(jobs.echo, "on the cluster").result(T) == "on the cluster"
            assert pool.workers == 4 * 2 and pool.capabilities.survives_crashes  # a nanny restarts a crashed worker
    finally:
        if worker is not None:
            _stop(worker)
        _stop(scheduler)
        scheduler.stderr.close()


# ------------------------------------------------------------------ jobs packed in one task
# With more jobs waiting than the cluster has threads, several ride in one Dask task:
# the first leaves running, the others stay queued (prefetched) until the worker reports
# that they began. They must stay waiting in every sense: never run once cancelled,
# their clock not started, back in the queue (no attempt used) if their task dies, and
# taken back for a thread that would otherwise be idle.


def _packed_behind(pool, latch, head_fn, head_args, later_of, n):
    """On a pool with workers=1: hold its one place with a first job, queue a head and
    ``n`` more behind it, then let the first end: the head leaves with the ``n`` packed
    in its task (one dispatch, under one lock). Returns (first gate, head, later jobs)."""
    gate = Gate()
    first = pool.submit(jobs.hold, gate, latch)
    assert latch.wait(1, T)
    head = pool.submit(head_fn, *head_args)
    later = [later_of(i) for i in range(n)]
    assert pool.stats().queued == n + 1  # all wait in the pool: its one place is taken
    gate.open()
    assert first.result(T) is None
    return gate, head, later


def test_a_cancelled_packed_job_never_runs(make_pool, cluster, tmp_path):
    pool = make_pool("dask", address=cluster, workers=1, queue_size=100)

    def record(path):
        with open(path, "w"):
            pass
        return path

    with Gate() as gate, Latch() as latch:
        first_gate, head, later = _packed_behind(
            pool, latch, jobs.hold, (gate, latch), lambda i: pool.submit(record, str(tmp_path / str(i))), 10
        )
        with first_gate:
            assert latch.wait(2, T)  # the head runs: its task was sent with the others packed in it
            assert all(j.prefetched for j in later) and pool.impl._packed == 10
            s = pool.stats()
            assert (s.busy, s.queued) == (1, 10) and s.conserved()  # packed jobs count as waiting
            cancelled = later[::2]
            assert all(j.cancel() for j in cancelled)
            assert pool.stats().queued == 5
            gate.open()
            assert head.result(T) is None
            assert [j.result(T) for j in later[1::2]] == [str(tmp_path / str(i)) for i in range(1, 10, 2)]
    assert {p.name for p in tmp_path.iterdir()} == {str(i) for i in range(1, 10, 2)}
    assert all(j.cancelled() for j in cancelled)
    s = pool.stats()
    assert (s.cancelled, s.succeeded, s.abandoned) == (5, 7, 0) and s.conserved()


def test_a_crash_puts_the_unbegun_packed_jobs_back_without_using_an_attempt():
    with pools.create_pool("dask", workers=1, processes=True, queue_size=100) as pool, Latch() as latch:
        first_gate, crash, later = _packed_behind(
            pool, latch, jobs.exit_now, (), lambda i: pool.submit(jobs.echo, i), 8
        )
        with first_gate:
            with pytest.raises(WorkerCrashed):
                crash.result(T)
            assert [j.result(T) for j in later] == list(range(8))  # on the nanny's new worker
        assert pool.impl._packed >= 8  # they were in the crashed task (and packed again after it)
        assert all(j.attempt == 1 for j in later)  # each began once: the crash used none of theirs
        s = pool.stats()
        assert (s.crashed, s.failed, s.succeeded) == (1, 1, 9) and s.conserved()


def _arrive_then_work(latch, seconds):
    latch.arrive()
    time.sleep(seconds)  # the job's own work, longer than the timeouts of the jobs behind it
    return seconds


def test_packed_jobs_have_their_own_timeout_from_when_they_begin(make_pool, cluster):
    # Timeouts generous enough for an echo through Dask to report back on a loaded
    # machine, and shorter than the head's work: jobs whose clocks started when they
    # were packed would all time out while the head works.
    timeout, work = 1.0, 1.5
    pool = make_pool("dask", address=cluster, workers=1, queue_size=100)
    with Latch() as latch:

        def later_of(i):
            if i == 3:  # runs until its own deadline
                return pool.submit(jobs.until_stopped, timeout=timeout)
            return pool.submit(jobs.echo, i, timeout=timeout)

        first_gate, head, later = _packed_behind(pool, latch, _arrive_then_work, (latch, work), later_of, 7)
        with first_gate:
            assert latch.wait(2, T)
            assert all(j.prefetched for j in later)
            assert head.result(T) == work
            # Their timeouts began when each began, after the head's work.
            assert [j.result(T) for j in later[:3]] == [0, 1, 2]
            with pytest.raises(JobTimeout):
                later[3].result(T)
            assert [j.result(T) for j in later[4:]] == [4, 5, 6]  # in the task, or taken back: on time
    assert later[0].started_at >= head.started_at + work  # its clock started when it began
    s = pool.stats()
    assert (s.timed_out, s.succeeded) == (1, 8) and s.conserved()


def test_no_job_waits_in_a_task_behind_a_long_one_while_a_thread_is_idle(make_pool, cluster):
    # The long job leaves first, with jobs packed behind it. Once every other job is done
    # and threads are idle, those jobs are taken back (they have not begun) and run
    # elsewhere, while the long job still holds its thread.
    pool = make_pool("dask", address=cluster, workers=THREADS, queue_size=100)
    with Gate() as short, Gate() as long_gate, Latch() as latch:
        blockers = [pool.submit(jobs.hold, short, latch) for _ in range(THREADS)]
        assert latch.wait(THREADS, T)
        long = pool.submit(jobs.hold, long_gate, latch)
        later = [pool.submit(jobs.echo, i) for i in range(40)]
        short.open()
        assert latch.wait(THREADS + 1, T)
        assert long.backend_slot.task.slots[1:]  # the long job's task carries others
        assert [j.result(T) for j in later] == list(range(40))  # while the long job still runs
        assert pool.impl._steals >= 1 and not long.done()
        long_gate.open()
        assert long.result(T) is None
        assert all(b.result(T) is None for b in blockers)
    s = pool.stats()
    assert (s.succeeded, s.abandoned) == (THREADS + 41, 0) and s.conserved()


def test_the_deadline_timer_lets_go_of_a_job_that_ended(make_pool, cluster):
    # A finished job with a timeout must not stay alive (in the pool's timer) until its
    # deadline: the first job of a task, and jobs packed behind it.
    pool = make_pool("dask", address=cluster, workers=1, queue_size=100)
    with Latch() as latch:
        first_gate, head, later = _packed_behind(
            pool, latch, jobs.echo, ("head",), lambda i: pool.submit(jobs.echo, i, timeout=3600), 5
        )
        with first_gate:
            assert [j.result(T) for j in later] == list(range(5))
        alone = pool.submit(jobs.echo, "alone", timeout=3600)
        assert alone.result(T) == "alone"
    assert pool.impl._packed == 5
    assert not pool.impl._deadlines._due  # every deadline was disarmed (the watch holds no job)
    with pool.impl._lock:  # until Dask has reported their tasks finished (outcomes come first)
        assert pool.impl._idle.wait_for(lambda: not pool.impl._inflight, T)
    refs = [weakref.ref(j) for j in [*later, alone]]
    del later, alone, head
    gc.collect()
    assert all(ref() is None for ref in refs)


def _record(path):
    with open(path, "w"):
        pass
    return path


def test_a_crash_in_a_packed_task_is_charged_to_the_job_that_crashed(tmp_path):
    # [ok, crasher] in one task: ok ends, and the next job kills its worker process at
    # once. The event that says "ok ended, the crasher began" must have left the worker
    # before the crasher began: else it dies with the worker, and the pool blames ok
    # (WorkerCrashed although it succeeded) and puts the crasher back with no attempt used.
    retry = Retry(attempts=2, backoff=0, on=(WorkerCrashed,))
    with pools.create_pool("dask", workers=1, processes=True, queue_size=100) as pool:
        for rnd in range(3):
            marker = str(tmp_path / f"ran-{rnd}")
            with Latch() as latch:
                first_gate, ok, (crasher,) = _packed_behind(
                    pool,
                    latch,
                    _record,
                    (marker,),
                    lambda i: pool.submit(jobs.crash_until, 2, "survived", retry=retry),
                    1,
                )
                with first_gate:
                    assert ok.result(T) == marker  # its outcome, not its worker's death
                    assert crasher.result(T) == ("survived", 2)  # charged: attempt 1 crashed
            assert pool.impl._packed == rnd + 1  # the crasher rode behind ok
            s = pool.stats()
            assert (s.crashed, s.retried, s.failed) == (rnd + 1, rnd + 1, 0) and s.conserved()


def test_a_packed_job_begins_only_after_the_job_before_it_ended(make_pool, cluster):
    # One event says "this job ended, that one began": the pool ends the first before
    # it begins the second, in one round of its lock, so busy never exceeds workers
    # (stats() would say so, and a submit with overflow="reject" could find no room).
    pool = make_pool("dask", address=cluster, workers=1, queue_size=100)
    seen: list[tuple[bool, int]] = []
    dispatcher = pool.start().impl.dispatcher
    start = dispatcher.started_locked

    def spy(job, started_at):  # under the pool's lock
        began = start(job, started_at)
        seen.append((began, dispatcher.running))
        return began

    dispatcher.started_locked = spy
    big = "x" * 100_000  # fetched with the task's result: the jobs after it go back, packed again
    with Latch() as latch:
        first_gate, head, later = _packed_behind(
            pool, latch, jobs.echo, ("head",), lambda i: pool.submit(jobs.echo, big if i == 20 else i), 60
        )
        with first_gate:
            assert head.result(T) == "head"
            assert [j.result(T) for j in later] == [big if i == 20 else i for i in range(60)]
    assert pool.impl._packed >= 40 and len(seen) >= 40
    assert all(began for began, _ in seen)
    assert max(running for _, running in seen) == 1  # never the ended one and the next at once
    s = pool.stats()
    assert (s.succeeded, s.busy) == (62, 0) and s.conserved()


def _until_cancelled(marker):
    stopped = pools.current_context().wait(T)
    with open(marker, "w") as f:
        f.write("stopped" if stopped else "never stopped")
    return stopped


@pytest.mark.parametrize("delayed", ["stop_attempt", "_stop_packed"])
def test_a_cancel_that_loses_the_race_with_the_begin_still_stops_the_job(make_pool, cluster, tmp_path, delayed):
    # A packed job is cancelled, and its worker begins it before the tombstone gets
    # there; the pool hears that it began before it sends the stop (on either path of
    # the stop): its context must still be cancelled where it runs.
    pool = make_pool("dask", address=cluster, workers=1, queue_size=100)
    marker = str(tmp_path / "x")
    stopping = threading.Event()
    began = threading.Event()
    waiters: list[asyncio.Future] = []
    with Gate() as gate, Latch() as latch:
        first_gate, head, (x,) = _packed_behind(
            pool, latch, jobs.hold, (gate, latch), lambda i: pool.submit(_until_cancelled, marker), 1
        )
        with first_gate:
            assert latch.wait(2, T)  # the head runs, x packed behind it
            assert x.prefetched
            real_begin = pool.impl._begin_locked

            def begin_spy(slot, started_at, arm):  # (loop, lock held)
                real_begin(slot, started_at, arm)
                if slot.job is x:
                    began.set()
                    for fut in waiters:
                        fut.done() or fut.set_result(None)

            pool.impl._begin_locked = begin_spy
            real = getattr(pool.impl, delayed)
            if delayed == "stop_attempt":

                def later(job, attempt):  # the canceller's thread: after the cancel, before the stop
                    if job is x:
                        stopping.set()
                        assert began.wait(T)
                    real(job, attempt)

            else:

                async def later(slot):  # the loop: the stop of a job that was still packed
                    if slot.job is x:
                        arrived = asyncio.get_running_loop().create_future()
                        waiters.append(arrived)
                        stopping.set()
                        await asyncio.wait_for(arrived, T)
                    await real(slot)

            setattr(pool.impl, delayed, later)
            cancelled = []
            canceller = threading.Thread(target=lambda: cancelled.append(x.cancel()))
            canceller.start()
            assert stopping.wait(T)  # x is cancelled; its stop has not gone out
            gate.open()  # the head ends, and its worker begins x: no tombstone there
            canceller.join(T)
            assert cancelled == [True] and x.cancelled()
            assert head.result(T) is None
            with pool.impl._lock:  # x's task ends once x returns: when its context is cancelled
                assert pool.impl._idle.wait_for(lambda: not pool.impl._inflight, 2 * T)
    with open(marker) as f:
        assert f.read() == "stopped"
    s = pool.stats()
    assert (s.cancelled, s.succeeded, s.abandoned, s.busy) == (1, 2, 0, 0) and s.conserved()


def _double_or_fail(x: int) -> int:
    if x == 700:
        raise jobs.JobFailure(f"no {x}")
    return 2 * x


def test_map_sends_batches_each_item_keeping_its_result_and_error(make_pool, cluster):
    pool = make_pool("dask", address=cluster)
    assert pool.capabilities.batches_map
    assert list(pool.map(abs, range(-2000, 0))) == list(range(2000, 0, -1))
    assert pool.stats().submitted < 200  # batches, not 2000 jobs
    results = pool.map(_double_or_fail, range(1500))
    assert [next(results) for _ in range(700)] == [2 * x for x in range(700)]
    with pytest.raises(jobs.JobFailure, match="no 700") as info:
        next(results)
    assert isinstance(info.value.__cause__, pools.RemoteTraceback)
    results.close()
