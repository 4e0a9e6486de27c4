"""A program that ends without shutting its pools down: the jobs still finish, as
with concurrent.futures, nothing is printed on stderr, and the exit does not hang.
Each case is a real program in its own interpreter."""

import multiprocessing
import subprocess
import sys
import textwrap

import pytest

import pools

T = 60.0


def run_program(tmp_path, source: str, *args: str) -> subprocess.CompletedProcess:
    # A file, not -c: spawn and forkserver workers import the main module by its path.
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=T, cwd=tmp_path)


@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_a_process_pool_left_open_finishes_its_running_job(tmp_path, method):
    # multiprocessing's own exit hook used to run first: it stopped the forkserver and
    # terminated the workers under the running job.
    done = run_program(
        tmp_path,
        """
        import sys, time, pools

        def job():
            time.sleep(0.5)
            print("job finished", flush=True)

        if __name__ == "__main__":
            pool = pools.create_pool("process", workers=2, start_method=sys.argv[1])
            pool.submit(job)
        """,
        method,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "job finished\n", "")


@pytest.mark.parametrize("backend", pools.available_backends())
def test_every_backend_left_open_finishes_its_queued_jobs(tmp_path, backend):
    out = tmp_path / "done.txt"
    done = run_program(
        tmp_path,
        """
        import sys, pools

        def write(path, i):
            with open(path, "a") as f:
                f.write(f"{i}\\n")

        async def awrite(path, i):
            write(path, i)

        if __name__ == "__main__":
            pool = pools.create_pool(sys.argv[1], workers=2)
            fn = awrite if pool.capabilities.runs == "coroutines" else write
            for i in range(20):
                pool.submit(fn, sys.argv[2], i)
        """,
        backend,
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert sorted(int(x) for x in out.read_text().split()) == list(range(20))
    assert "Traceback" not in done.stderr


def test_many_idle_fork_pools_left_open_exit_cleanly(tmp_path):
    # With "fork", each pool's workers are forked copies of a process that holds the
    # other pools: their own exit must not shut those copies down (it drained or
    # killed their siblings, or hung).
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no 'fork' start method on this platform")
    for _ in range(3):
        done = run_program(
            tmp_path,
            """
            import pools
            if __name__ == "__main__":
                ps = [pools.create_pool("process", workers=2, start_method="fork").start() for _ in range(8)]
                print(sum(p.submit(abs, -i).result(30) for i, p in enumerate(ps)), flush=True)
            """,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, "28\n", "")


def test_a_forked_child_leaves_the_parents_pools_alone_at_its_exit(tmp_path):
    # The child inherits a copy of a pool with a running job but none of its
    # threads: the exit hook used to wait for that copy to drain, for ever.
    done = run_program(
        tmp_path,
        """
        import os, sys, pools
        from pools.testing.jobs import Gate, Latch, hold

        if __name__ == "__main__":
            pool, gate, latch = pools.create_pool("thread", workers=1), Gate(), Latch()
            job = pool.submit(hold, gate, latch, "held")
            assert latch.wait(1, 30)
            pid = os.fork()
            if pid == 0:
                sys.exit(0)  # the interpreter's own exit: its exit hooks run, no `with` unwinds first
            _, status = os.waitpid(pid, 0)
            gate.open()
            print(os.waitstatus_to_exitcode(status), job.result(30), flush=True)
        """,
    )
    assert (done.returncode, done.stdout) == (0, "0 held\n"), done.stderr


def test_a_pool_started_during_interpreter_exit_refuses_the_job(tmp_path):
    # A hook registered before `import pools` runs after the pools' own exit hook:
    # a job accepted there would never run (ThreadPoolExecutor raises too).
    done = run_program(
        tmp_path,
        """
        import atexit

        def late():
            try:
                pool.submit(print, "late job finished")
            except pools.PoolClosed as err:
                print("refused:", err, flush=True)
            else:
                print("accepted", flush=True)

        atexit.register(late)
        import pools
        pool = pools.create_pool("thread", workers=2)
        started = pools.create_pool("thread", workers=2).start()  # open, and shut down at exit
        atexit.register(lambda: print("started pool:", type(_try(started)).__name__, flush=True))

        def _try(p):
            try:
                p.submit(print, "never")
            except pools.PoolClosed as err:
                return err
        """,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "started pool: PoolClosed"
    assert lines[1].startswith("refused: ") and "after interpreter shutdown" in lines[1]
    assert "late job finished" not in done.stdout and "accepted" not in done.stdout
    assert done.stderr == ""


def test_a_job_submitted_while_the_main_thread_ends_runs_or_is_refused_never_lost(tmp_path):
    # A non-daemon thread starts a pool and submits just as the exit hook runs: the
    # pool either is shut down by the hook (its jobs finish) or refuses the job.
    for _ in range(3):
        done = run_program(
            tmp_path,
            """
            import sys, threading, time, pools

            def job(i):
                time.sleep(0.2)
                sys.stdout.write(f"finished {i}\\n")  # one write: threads print at once

            pool = pools.create_pool("thread", workers=1)

            def producer():
                for i in range(3):
                    try:
                        pool.submit(job, i)
                    except pools.PoolClosed:
                        sys.stdout.write(f"refused {i}\\n")

            threading.Thread(target=producer).start()  # not a daemon: it outlives the main thread
            """,
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        said = sorted(line.split()[1] for line in done.stdout.splitlines())
        assert said == ["0", "1", "2"], done.stdout  # each job finished or refused, once


def test_a_failing_pool_shutdown_at_exit_spares_the_other_pools_and_threads(tmp_path):
    # The hook runs inside threading's own shutdown: one pool's error must not skip
    # the other pools, nor the joining of the program's non-daemon threads.
    done = run_program(
        tmp_path,
        """
        import sys, threading, time, pools
        from pools.thread import ThreadBackend

        class BadStop(ThreadBackend):
            name = "badstop"

            def stop(self, deadline):
                super().stop(deadline)
                raise OSError("stop failed")

        def job(i):
            time.sleep(0.1)
            sys.stdout.write(f"job {i}\\n")  # one write: threads print at once

        bad = pools.Pool(BadStop, workers=1)
        good = pools.create_pool("thread", workers=1)
        bad.submit(job, "bad")
        for i in range(2):
            good.submit(job, i)

        def user():
            time.sleep(0.5)
            print("user thread finished", flush=True)

        threading.Thread(target=user).start()
        """,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["job 0", "job 1", "job bad", "user thread finished"]
    assert "OSError: stop failed" in done.stderr and "at exit failed" in done.stderr


def test_a_done_callback_that_never_returns_cannot_hang_the_exit(tmp_path):
    done = run_program(
        tmp_path,
        """
        import threading, pools
        from pools.testing.jobs import echo

        if __name__ == "__main__":
            pool = pools.create_pool("process", workers=1)
            job = pool.submit(echo, 1)
            job.add_done_callback(lambda j: threading.Event().wait())  # on the callback thread
            assert job.result(30) == 1
            print("main thread ends", flush=True)
        """,
    )
    assert (done.returncode, done.stdout) == (0, "main thread ends\n"), done.stderr
