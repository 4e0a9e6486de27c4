"""Ctrl-C and SIGTERM never hang a program that uses a pool, and leave no worker behind."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import pools
from pools.testing import descendants, wait_process_gone

PROGRAM = textwrap.dedent(
    """
    import os, signal, sys, tempfile
    import pools

    # A child inherits its parent's ignored and blocked signals (and Python keeps an
    # ignored SIGINT ignored): started by a test runner where a library in an earlier test
    # left SIGINT so, Ctrl-C would never reach this program. A shell starts programs with
    # it in place, and that is the program this test is about.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from pools.testing import jobs

    backend, mode = sys.argv[1], sys.argv[2]
    if mode == "in-exit":  # Ctrl-C once `with` waits for the jobs: "ready" comes from there
        from pools.lowlevel import set_race_hook

        set_race_hook(lambda point: point == "shutdown" and print("ready", flush=True))
    latch, marker = jobs.Latch(), os.path.join(tempfile.mkdtemp(), "kept-running")
    with pools.create_pool(backend, workers=4) as pool:
        # Hour-long jobs that ignore their context: only a kill (process), a cancelled
        # task (asyncio) or abandonment (threads, Dask) ends them.
        stubborn = jobs.job_for(pool, jobs.until_stopped)
        held = [pool.submit(stubborn, latch, marker, 3600, True) for _ in range(3)]
        if mode == "twice":
            # Ctrl-C again in the middle of the first one's shutdown: when it cancels
            # this job, whose callback runs in the thread that cancels.
            held[0].add_done_callback(lambda _: os.kill(os.getpid(), signal.SIGINT))
        if not latch.wait(3, timeout=60):
            sys.exit("the held jobs did not start")
        if mode != "in-exit":
            print("ready", flush=True)
            held[0].result()  # Ctrl-C lands here
    """
)


def _start(backend, mode="once"):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, backend, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline().split()
    if line != ["ready"]:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the program did not start: {err}")
    # Its workers, running the held jobs (and under "forkserver", the fork server).
    return proc, descendants(proc.pid)


@pytest.fixture
def program(request):
    """Start the program; whatever the test does, it and what it started are killed
    and reaped at the end."""
    started = []

    def start(backend, mode="once"):
        proc, below = _start(backend, mode)
        started.append((proc, below))
        if backend == "process":  # 4 workers, the fork server (and perhaps the resource tracker)
            assert len(below) >= 5, f"the program started too few processes: {sorted(below)}"
        return proc, below

    yield start
    for proc, below in started:
        if proc.poll() is None:
            proc.kill()
        _kill_left(below)  # before reading the pipes, which a live worker holds open
        proc.communicate(timeout=30)


def _kill_left(below):
    left = [pid for pid in sorted(below) if not wait_process_gone(pid, 0)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _ended(proc, below, what):
    """Wait for the program and what it started to end; kill what is left (before
    reading the pipes, which a live worker holds open) and fail naming it."""
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        _kill_left(below)
        pytest.fail(f"{what} did not end the program within 20 s")
    for pid in below:
        wait_process_gone(pid, 10.0)
    left = _kill_left(below)
    _, err = proc.communicate(timeout=30)
    assert not left, f"{what}: {len(left)} of its {len(below)} processes outlived it ({left})\n{err}"
    return err


@pytest.mark.parametrize("mode", ["once", "twice", "in-exit"])
@pytest.mark.parametrize("backend", pools.available_backends())
def test_ctrl_c_ends_the_program_promptly(backend, mode, program):
    # once: in the `with` block; twice: again while the shutdown it began runs; in-exit:
    # once `with` waits for the running jobs.
    proc, below = program(backend, mode)
    proc.send_signal(signal.SIGINT)
    err = _ended(proc, below, f"Ctrl-C ({mode}) on the {backend} backend")
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    # Nothing but the interrupt: no error from a shutdown that an interrupt cut short
    # and that the exit hook finished.
    others = [line for line in err.splitlines() if line and not line[0].isspace() and "KeyboardInterrupt" not in line]
    assert [line for line in others if not line.startswith(("Traceback", "During handling"))] == [], err


@pytest.mark.parametrize("backend", pools.available_backends())
def test_sigterm_ends_the_program_and_its_workers(backend, program):
    # A worker running a job that ignores its context dies with the program too,
    # whether its parent is the program or (forkserver) the fork server.
    proc, below = program(backend)
    proc.send_signal(signal.SIGTERM)
    _ended(proc, below, f"SIGTERM on the {backend} backend")
    assert proc.returncode == -signal.SIGTERM


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
