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
