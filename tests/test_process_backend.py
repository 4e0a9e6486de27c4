"""What only the process backend does: pickling, killing, crash storms."""

import ast
import functools
import gc
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

import pools
import pools.lowlevel
from pools.testing import jobs, process_alive, wait_process_gone

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


def test_a_result_whose_pickling_raises_system_exit_fails_the_job_not_the_worker(make_pool):
    # As if the function had raised SystemExit itself: the job's error, and the
    # worker lives on (it used to die, and the job was reported as a crash).
    pool = make_pool("process", workers=1)
    pid = pool.submit(jobs.context_info).result(T)["pid"]
    err = pool.submit(jobs.returns_exit_at_pickle).exception(T)
    assert type(err) is SystemExit and isinstance(err.__cause__, pools.RemoteTraceback)
    assert pool.submit(jobs.context_info).result(T)["pid"] == pid
    s = pool.stats()
    assert (s.crashed, s.failed, s.succeeded) == (0, 1, 2)


def test_a_result_whose_unpickling_raises_system_exit_fails_only_its_job(make_pool):
    # Unpickled on the pool's manager thread: a SystemExit there broke the whole pool.
    pool = make_pool("process", workers=2)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        other = pool.submit(jobs.hold, gate, latch, "other")
        assert latch.wait(1, T)
        err = pool.submit(jobs.returns_exit_at_unpickle).exception(T)
        gate.open()
        assert other.result(T) == "other"
    assert isinstance(err, pickle.UnpicklingError) and "SystemExit" in str(err)
    assert pool.submit(jobs.echo, 1).result(T) == 1  # the pool goes on
    assert pool.stats().failed == 1


def test_the_pool_does_not_keep_the_last_callable_alive(make_pool):
    # The pool pickles a callable once for the jobs that follow; it must not keep
    # the callable (and a bound method's object) alive once its jobs ended.
    pool = make_pool("process", workers=1)
    owner = jobs.Token()
    ref = weakref.ref(owner)
    assert pool.submit(functools.partial(jobs.ignore, owner)).result(T) is None
    del owner
    gc.collect()
    assert ref() is None


def test_timeout_kills_a_job_that_never_looks_at_its_context(make_pool):
    pool = make_pool("process", workers=1)
    job = pool.submit(jobs.context_info)
    first_pid = job.result(T)["pid"]
    slow = pool.submit(getpid_then_sleep, 3600, timeout=0.2)
    with pytest.raises(pools.JobTimeout):
        slow.result(T)
    assert not process_alive(first_pid), "the worker running the job was not killed"
    assert pool.submit(jobs.context_info).result(T)["pid"] != first_pid


def pid_then_until_stopped(pid_file, latch):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    return jobs.until_stopped(latch)


def test_cancel_kills_the_running_worker(make_pool, tmp_path):
    pool = make_pool("process", workers=1)
    pid_file = tmp_path / "pid"
    with jobs.Latch() as latch:
        job = pool.submit(pid_then_until_stopped, str(pid_file), latch)
        assert latch.wait(1, T)  # it wrote its worker's pid before it arrived
        old_pid = int(pid_file.read_text())
        assert process_alive(old_pid)
        assert job.cancel()
    assert wait_process_gone(old_pid, T), f"worker {old_pid} still runs the cancelled job"
    new_pid = pool.submit(jobs.context_info).result(T)["pid"]
    assert new_pid != old_pid and process_alive(new_pid)  # its replacement serves
    assert pool.stats().cancelled == 1


def test_worker_traceback_is_the_cause(make_pool):
    pool = make_pool("process", workers=1)
    with pytest.raises(jobs.JobFailure) as info:
        pool.submit(jobs.fail, "remote").result(T)
    cause = info.value.__cause__
    assert isinstance(cause, pools.RemoteTraceback)
    assert "in fail" in cause.tb and "JobFailure: remote" in cause.tb


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


def test_the_pool_adds_its_module_to_what_the_program_asked_the_fork_server_to_preload():
    """``set_forkserver_preload`` sets one process-wide list: the pool adds its worker
    loop to it rather than replacing the program's modules (it used to)."""
    program = textwrap.dedent(
        """
        import multiprocessing
        import pools
        from worker_probes import imported

        if __name__ == "__main__":
            multiprocessing.set_forkserver_preload(["xml.dom.minidom"])
            with pools.create_pool("process", workers=1, start_method="forkserver") as pool:
                names = ["xml.dom.minidom", "pools._process_worker", "xml.sax"]
                print([pool.submit(imported, name).result(60) for name in names])
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=T)
    assert out.returncode == 0, out.stderr
    # Preloaded in the server, so every worker forked from it has them; nothing imported xml.sax.
    assert ast.literal_eval(out.stdout.strip()) == [True, True, False]


@pytest.mark.parametrize(
    ("asked", "after"),
    [
        (["__main__"], ["__main__", "pools._process_worker"]),  # multiprocessing's default
        ([], ["pools._process_worker"]),  # the program's own choice: no __main__ in the server
        (["json", "pools._process_worker"], ["json", "pools._process_worker"]),  # there already
    ],
)
def test_add_forkserver_preload_keeps_what_was_asked_before(monkeypatch, asked, after):
    from multiprocessing import forkserver

    monkeypatch.setattr(forkserver._forkserver, "_preload_modules", asked)
    pools.lowlevel.add_forkserver_preload("pools._process_worker")
    assert forkserver._forkserver._preload_modules == after


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


# ------------------------------------------------------------------ prefetched backlogs
# With more waiting jobs than workers, a worker is sent its next jobs with the
# current one. Those jobs must stay waiting in every sense: never run once
# cancelled, their clock not started, and back on the heap if their worker dies.


def record(path):
    with open(path, "w"):
        pass
    return path


def hold_then_exit(gate, latch):
    latch.arrive()
    gate.wait()
    os._exit(3)


def _until(condition, timeout=T):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.001)


# The backlog jobs' timeout: long enough for any of them to run and report back on a
# loaded machine, short against the first job's timeout in the test that needs both.
BACKLOG_TIMEOUT = 1.0


def _held_with_backlog(pool, gate, latch, first_fn, backlog_fn, args_of, n, **first_opts):
    # A busy worker's backlog is refilled while less than half of its depth (16) is
    # used: jobs that arrive one at a time (a loaded machine) fill it up to 8, no more.
    assert n <= 8
    first = pool.submit(first_fn, gate, latch, **first_opts)
    assert latch.wait(1, T)
    later = [pool.submit(backlog_fn, *args_of(i), timeout=BACKLOG_TIMEOUT) for i in range(n)]
    _until(lambda: all(j.prefetched for j in later))  # all sent to the busy worker
    return first, later


def test_cancelled_backlog_jobs_never_run_and_stay_counted_as_waiting(make_pool, tmp_path):
    pool = make_pool("process", workers=1, queue_size=100)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        _first, later = _held_with_backlog(pool, gate, latch, jobs.hold, record, lambda i: (str(tmp_path / str(i)),), 8)
        s = pool.stats()
        assert (s.busy, s.queued) == (1, 8) and s.conserved()
        cancelled = later[::2]
        assert all(j.cancel() for j in cancelled)
        assert pool.stats().queued == 4
        gate.open()
        assert sorted(j.result(T) for j in later[1::2]) == sorted(str(tmp_path / str(i)) for i in range(1, 8, 2))
    assert {p.name for p in tmp_path.iterdir()} == {str(i) for i in range(1, 8, 2)}
    assert all(j.cancelled() for j in cancelled)
    assert pool.stats().conserved()


def test_a_crash_fails_only_the_running_job_and_its_backlog_runs_elsewhere(make_pool):
    pool = make_pool("process", workers=1, queue_size=100)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        first, later = _held_with_backlog(pool, gate, latch, hold_then_exit, jobs.echo, lambda i: (i,), 8)
        gate.open()
        with pytest.raises(pools.WorkerCrashed):
            first.result(T)
        assert [j.result(T) for j in later] == list(range(8))
    # Each ran once, on the new worker, within its own timeout: never begun before.
    assert all(j.attempt == 1 for j in later)
    s = pool.stats()
    assert (s.crashed, s.succeeded, s.failed) == (1, 8, 1) and s.conserved()


def test_a_killed_worker_gives_its_backlog_back_and_their_clocks_start_only_when_they_run(make_pool):
    pool = make_pool("process", workers=1, queue_size=100)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        # The first job times out after BACKLOG_TIMEOUT + 0.5 s; the backlog's timeouts
        # would all have passed by then if their clocks had started when they were sent.
        first, later = _held_with_backlog(
            pool, gate, latch, jobs.hold, jobs.echo, lambda i: (i,), 6, timeout=BACKLOG_TIMEOUT + 0.5
        )
        with pytest.raises(pools.JobTimeout):
            first.result(T)
        assert [j.result(T) for j in later] == list(range(6))
    s = pool.stats()
    assert (s.timed_out, s.succeeded) == (1, 6) and s.conserved()


def test_cancelling_the_running_job_keeps_its_backlog(make_pool):
    pool = make_pool("process", workers=1, queue_size=100)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        first, later = _held_with_backlog(pool, gate, latch, jobs.hold, jobs.echo, lambda i: (i,), 6)
        assert first.cancel()
        assert [j.result(T) for j in later] == list(range(6))
    s = pool.stats()
    assert (s.cancelled, s.succeeded) == (1, 6) and s.conserved()


def test_results_are_let_gather_only_while_every_worker_has_two_jobs_at_hand(make_pool):
    # The manager waits before it reads results (ProcessBackend._coalesce) only when
    # reading them later idles no worker: each runs a job with COALESCE_AHEAD more sent
    # ahead. One fewer, and the worker's next end would leave it waiting for the manager.
    from pools.process import COALESCE_AHEAD, COALESCE_MOST

    pool = make_pool("process", workers=1, queue_size=100)
    assert [pool.submit(jobs.echo, i).result(T) for i in range(5)] == list(range(5))  # a recent run time
    assert pool.impl._backlog.run_average() > 0
    assert pool.impl._coalesce() == 0  # idle
    with jobs.Gate() as gate, jobs.Latch() as latch:
        first, later = _held_with_backlog(pool, gate, latch, jobs.hold, jobs.echo, lambda i: (i,), COALESCE_AHEAD - 1)
        assert pool.impl._coalesce() == 0
        later.append(pool.submit(jobs.echo, COALESCE_AHEAD - 1, timeout=BACKLOG_TIMEOUT))
        _until(lambda: later[-1].prefetched)
        with pool.impl._lock:  # held by the manager from marking a job prefetched to adding it to the backlog
            assert 0 < pool.impl._coalesce() <= COALESCE_MOST
        gate.open()
        assert first.result(T) is None
        assert [j.result(T) for j in later] == list(range(COALESCE_AHEAD))
    assert pool.stats().conserved()


def test_backlogs_are_sized_by_the_run_times_the_worker_measured_not_by_when_results_were_read(make_pool):
    # No-op results read late (here: the manager kept from settling them) must not
    # count as long jobs, or the backlog that hides the round trip would shrink.
    pool = make_pool("process", workers=1, queue_size=100)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        first, later = _held_with_backlog(pool, gate, latch, jobs.hold, jobs.echo, lambda i: (i,), 8)
        w = pool.impl._workers[0]
        slots = [w.slot] + [slot for _, slot, _ in w.backlog]
        with pool.impl._lock:  # the manager settles nothing meanwhile
            opened = time.monotonic()
            gate.open()
            _until(lambda: all(w.ends[slot] > opened for slot in slots))  # all nine ran and were sent
            _until(lambda: time.monotonic() - opened > 0.5)  # the results wait, unread
        assert first.result(T) is None
        assert [j.result(T) for j in later] == list(range(8))
    # Read 0.5 s late, they would average over 0.3 s; the worker timed each in microseconds.
    assert pool.impl._backlog.run_average() < 0.05
    assert pool.stats().conserved()


def test_an_idle_worker_takes_back_jobs_waiting_behind_a_long_one(make_pool):
    # No job may wait in the backlog of a worker stuck on a long job while another
    # worker has nothing to do: that would also deadlock jobs that wait for each other.
    pool = make_pool("process", workers=2, queue_size=100)
    with jobs.Gate() as long_gate, jobs.Gate() as short_gate, jobs.Latch() as latch:
        held = [pool.submit(jobs.hold, long_gate, latch), pool.submit(jobs.hold, short_gate, latch)]
        assert latch.wait(2, T)
        later = [pool.submit(jobs.echo, i) for i in range(20)]
        _until(lambda: all(w.backlog for w in pool.impl._workers))  # both workers have a backlog
        short_gate.open()
        assert [j.result(T) for j in later] == list(range(20))  # while the long job still runs
        assert pool.impl._steals >= 1 and not held[0].done()
        long_gate.open()
        assert held[0].result(T) is None
    assert pool.stats().conserved()
    # Once the workers hold nothing, no payload bytes are left counted against them
    # (a stolen job that ended elsewhere must not leak its size into the victim's cap).
    _until(lambda: not any(w.held() for w in pool.impl._workers))
    assert [w.backlog_bytes for w in pool.impl._workers] == [0, 0]


def test_jobs_of_different_functions_interleaved_each_run_their_own(make_pool):
    # The pickled function is cached on both sides (one entry): alternating
    # functions must never run one job's arguments through the other's function.
    pool = make_pool("process", workers=2, queue_size=500)
    submitted = [pool.submit(jobs.add, i, 1) if i % 3 else pool.submit(jobs.echo, i) for i in range(300)]
    assert [j.result(T) for j in submitted] == [i + 1 if i % 3 else i for i in range(300)]


def test_a_worker_that_dies_between_two_jobs_gives_back_the_one_it_never_began(make_pool):
    import signal

    pool = make_pool("process", workers=1, queue_size=100)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        first, later = _held_with_backlog(pool, gate, latch, jobs.hold, jobs.echo, lambda i: (i,), 1)
        w = pool.impl._workers[0]
        pid = w.process.pid
        # Hold the slot lock shared with the worker: it stops right after the first job,
        # before the next begins. Kept held after the kill, it also stands for a lock
        # that a worker killed inside its critical section would never release: the
        # manager must not wait for it once the worker is gone.
        w.lock._lock.acquire()
        try:
            gate.open()
            assert first.result(T) is None
            os.kill(pid, signal.SIGKILL)  # the OOM killer, between two jobs
            assert wait_process_gone(pid, T)
            assert later[0].result(T) == 0
        finally:
            w.lock._lock.release()
    assert later[0].attempt == 1  # it never began on the dead worker: no attempt used
    s = pool.stats()
    assert (s.crashed, s.failed, s.succeeded) == (0, 0, 2) and s.conserved()


def test_busy_never_exceeds_workers_when_a_backlog_job_starts(make_pool):
    pool = make_pool("process", workers=1, queue_size=3000)
    seen = []
    dispatcher = pool.impl.dispatcher
    start = dispatcher.started_locked

    def spy(job, started_at):
        started = start(job, started_at)
        seen.append(dispatcher.running)
        return started

    dispatcher.started_locked = spy
    assert [j.result(T) for j in [pool.submit(jobs.echo, i) for i in range(1000)]] == list(range(1000))
    assert seen and max(seen) <= pool.workers


def test_shrinking_takes_back_the_jobs_sent_ahead_and_runs_each_once(make_pool):
    # Small jobs on a deep queue: each worker holds a backlog sent ahead. Shrinking
    # retires workers holding one; their jobs not begun go back to the queue.
    pool = make_pool("process", workers=4, queue_size=2000)
    with jobs.Gate() as gate, jobs.Latch() as latch:
        held = [pool.submit(jobs.hold, gate, latch, i) for i in range(4)]
        assert latch.wait(4, 30)
        rest = [pool.submit(jobs.worker_state, i) for i in range(400)]
        # Sent ahead to the busy workers before the shrink (the manager does it between
        # two wake-ups; no event tells when): else there would be nothing to take back.
        deadline = time.monotonic() + 30
        while sum(job.prefetched for job in rest) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert sum(job.prefetched for job in rest) >= 3
        pool.resize(1)
        gate.open()
        assert [job.result(30) for job in held] == [0, 1, 2, 3]
        assert [job.result(30)[2] for job in rest] == list(range(400))
    s = pool.stats()
    assert (s.submitted, s.succeeded, s.workers) == (404, 404, 1) and s.conserved()
    assert pool.stats().alive == 1
    # after the shrink, the 400 ran on the one worker left (the 3 others retired)
    assert len({job.result()[1] for job in rest[-100:]}) == 1


def test_a_worker_is_never_sent_more_than_its_max_tasks(make_pool):
    pool = make_pool("process", workers=2, max_tasks_per_worker=5, queue_size=1000)
    results = [job.result(30) for job in [pool.submit(jobs.worker_state, i) for i in range(200)]]
    assert [r[2] for r in results] == list(range(200))
    per_worker = {}
    for _, worker, _ in results:
        per_worker[worker] = per_worker.get(worker, 0) + 1
    # None ran more than its 5 (a job taken back from a backlog for an idle worker lets
    # the last ones end with fewer); every worker that ran its 5 was replaced.
    assert max(per_worker.values()) == 5 and sum(per_worker.values()) == 200, per_worker
    pool.shutdown()
    assert pool.stats().recycled == sum(n == 5 for n in per_worker.values())


@pytest.mark.parametrize("how", ["Executor.shutdown(cancel_futures=True)", "Pool.shutdown(cancel_pending=True)"])
def test_a_job_sent_ahead_that_its_worker_began_is_not_cancelled_as_waiting(how):
    # A worker begins the next job of its backlog before the pool's manager hears of
    # it. Cancelling the jobs not begun (concurrent.futures' cancel) in that gap must
    # see that this one began: the manager is held between the two (the race hook at
    # the end of the first job, before the second counts as running), so the gap,
    # which a loaded machine opens by itself, stays open until the cancel is done.
    from pools.lowlevel import set_race_hook

    ex = pools.Executor("process", workers=1)
    pool = ex.pool
    at_finish, go_on = threading.Event(), threading.Event()

    def hold_the_manager(point):
        if point == "finish" and threading.current_thread().name.endswith("-manager") and not at_finish.is_set():
            at_finish.set()
            go_on.wait(T)

    with jobs.Gate() as first_gate, jobs.Gate() as gate, jobs.Latch() as latch:
        first = ex.submit(jobs.hold, first_gate, latch, "first")
        assert latch.wait(1, T)
        second = ex.submit(jobs.hold, gate, latch, "second")
        _until(lambda: second.prefetched)  # in the busy worker's backlog
        previous = set_race_hook(hold_the_manager)
        try:
            first_gate.open()
            assert at_finish.wait(T)  # the manager ends the first job, not yet told of the second
            assert latch.wait(2, T)  # ... which the worker began
            assert second.status is pools.JobStatus.QUEUED and second.prefetched
            if how.startswith("Executor"):
                ex.shutdown(wait=False, cancel_futures=True)
            else:
                pool.shutdown(wait=False, cancel_pending=True)
            assert not second.cancelled()
        finally:
            set_race_hook(previous)
            go_on.set()
        gate.open()
        assert (first.result(T), second.result(T)) == ("first", "second")  # its worker was not killed
    pool.shutdown()
    s = pool.stats()
    assert (s.succeeded, s.cancelled, s.crashed) == (2, 0, 0), s


def _stop_lines(*starts):
    """Line numbers in ProcessBackend.stop of the statements that begin with ``starts``."""
    import inspect

    from pools.process import ProcessBackend

    lines, first = inspect.getsourcelines(ProcessBackend.stop)
    found = [first + i for i, line in enumerate(lines) if line.strip().startswith(starts)]
    assert found, starts
    return found


@pytest.mark.parametrize(
    "where",
    [
        "self._manager.join(",
        "w.conn.send_bytes(_STOP)",
        "w.process.join(max(",
        "w.conn.close()",
        "self._close_wake_pipe()",
    ],
)
def test_a_shutdown_interrupted_inside_stop_is_finished_by_the_next_one(make_pool, where):
    # Ctrl-C can land on any line of the backend's stop(): the next shutdown (the exit
    # hook's) must finish the job, reaping every worker once and raising nothing.
    import sys

    from pools._compiled import compiled_modules
    from pools.process import ProcessBackend

    if "process" in compiled_modules():
        pytest.skip("compiled: its lines cannot be traced (the pure pass runs this test)")
    pool = make_pool("process", workers=3)  # two held jobs (their workers killed), one idle worker
    latch = jobs.Latch()
    held = [pool.submit(jobs.until_stopped, latch, os.devnull, 3600, True) for _ in range(2)]
    assert latch.wait(2, T)
    pids = [w.process.pid for w in pool.impl._workers if w is not None]
    assert len(pids) == 3
    target, lines = ProcessBackend.stop.__code__, set(_stop_lines(where))

    # Coverage traces through sys.settrace on 3.11: it is put back afterwards, or the
    # rest of this process's tests would go unmeasured. (Handed other frames meanwhile,
    # it would put itself back at once, in place of this tracer.)
    previous = sys.gettrace()

    def tracer(frame, event, arg):
        if frame.f_code is not target:
            return None

        def line(frame, event, arg):
            if event == "line" and frame.f_lineno in lines:
                lines.clear()  # once
                raise KeyboardInterrupt
            return line

        return line

    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt):
            pool.shutdown(timeout=0)
    finally:
        sys.settrace(previous)
    assert not lines, f"the shutdown never reached {where!r}"
    report = pool.shutdown()  # what the exit hook does
    assert report.complete and set(report.killed) == {j.job_id for j in held}
    assert all(wait_process_gone(pid, T) for pid in pids)
    assert pool.impl._wake_r == pool.impl._wake_w == -1  # the wake-up pipe closed, once
    latch.close()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_workers_outlive_the_thread_that_started_the_pool(make_pool, method):
    # The kernel's parent-death signal comes when the *thread* that started a child
    # ends: workers watching for it died with a short-lived thread that started the pool.
    box = {}

    def starter():
        pool = box["pool"] = make_pool("process", workers=2, start_method=method).start()
        box["pids"] = {w.process.pid for w in pool.impl._workers if w is not None}

    thread = threading.Thread(target=starter)
    thread.start()
    thread.join(T)
    pool, pids = box["pool"], box["pids"]
    assert len(pids) == 2
    with jobs.Gate() as gate:  # both workers take a job: each has lived past the thread's end
        latch = jobs.Latch()
        held = [pool.submit(jobs.hold, gate, latch, i) for i in range(2)]
        assert latch.wait(2, T)
        gate.open()
        assert [j.result(T) for j in held] == [0, 1]
        latch.close()
    assert {w.process.pid for w in pool.impl._workers if w is not None} == pids
    assert all(process_alive(pid) for pid in pids)
    assert pool.stats().crashed == 0


@pytest.mark.parametrize("group", [False, True])
def test_exit_with_takes_a_process_that_exited_unreaped_for_ended(group):
    """A zombie keeps its pid until its parent reaps it, and a parent may never (an
    orphan where nothing reaps them): the watch spun at full CPU until then. With
    group=True in a process that does not lead its group, only that process ends."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    watcher = None
    try:
        os.waitid(os.P_PID, gone.pid, os.WEXITED | os.WNOWAIT)  # exited; left unreaped
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from pools.lowlevel import exit_with; "
                f"exit_with({gone.pid}, 5, group={group}); time.sleep(60)",
            ]
        )
        assert watcher.wait(30) == 5
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        gone.wait()
