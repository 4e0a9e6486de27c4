"""Ctrl-C and SIGTERM never hang a program that uses a pool, and leave no worker behind."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import pools
from pools.testing import wait_process_gone

PROGRAM = textwrap.dedent(
    """
    import os, signal, sys, time, asyncio
    import pools

    # A child inherits its parent's ignored and blocked signals (and Python keeps an
    # ignored SIGINT ignored): started by a test runner where a library in an earlier test
    # left SIGINT so, Ctrl-C would never reach this program. A shell starts programs with
    # it in place, and that is the program this test is about.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from pools.testing import jobs

    def stubborn():  # ignores its context: only a kill or abandonment ends it
        time.sleep(3600)

    async def astubborn():
        await asyncio.sleep(3600)

    backend = sys.argv[1]
    with pools.create_pool(backend, workers=4) as pool:
        fn = astubborn if backend == "asyncio" else stubborn
        held = [pool.submit(fn) for _ in range(3)]
        info = pool.submit(jobs.job_for(pool, jobs.context_info)).result(30)
        print("ready", info["pid"], flush=True)
        held[0].result()  # Ctrl-C lands here
    """
)


def _start(backend):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline().split()
    if not (line and line[0] == "ready"):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the program did not start: {err}")
    return proc, int(line[1])


@pytest.fixture
def program(request):
    """Start the program; whatever the test does, it is killed and reaped at the end."""
    started = []

    def start(backend):
        proc, pid = _start(backend)
        started.append(proc)
        return proc, pid

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("backend", pools.available_backends())
def test_ctrl_c_ends_the_program_promptly(backend, program):
    proc, worker_pid = program(backend)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"Ctrl-C did not end a program using the {backend} backend within 20 s")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    if backend == "process":
        assert wait_process_gone(worker_pid, 10.0), "a worker process outlived the program"


@pytest.mark.parametrize("backend", pools.available_backends())
def test_sigterm_ends_the_program_and_its_workers(backend, program):
    proc, worker_pid = program(backend)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == -signal.SIGTERM
    proc.communicate(timeout=30)
    if backend == "process":
        assert wait_process_gone(worker_pid, 10.0), "a worker process outlived its killed parent"


def test_exit_without_shutdown_still_finishes_the_jobs(tmp_path):
    out = tmp_path / "done.txt"
    program = textwrap.dedent(
        f"""
        import pools
        def write(i):
            with open({str(out)!r}, "a") as f:
                f.write(f"{{i}}\\n")
        pool = pools.create_pool("thread", workers=2)
        for i in range(20):
            pool.submit(write, i)
        """
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    assert sorted(int(x) for x in out.read_text().split()) == list(range(20))
