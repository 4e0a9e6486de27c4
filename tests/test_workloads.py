"""Benchmark your own workload: a user's module, written here into a temporary
directory, run by the real command (the current directory importable, as with
``python -m``) into a real SQLite file and the HTML report, opened in real headless
Chromium. And every mistake a user can make — a bad import path, a missing
attribute, bad TOML, an unknown field, a non-callable, an argument source that
raises — is an error that names it, with nothing written to the database."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reports.browser import check_page, find_chromium
from scenarios import spec, store
from scenarios.workload import WorkloadError, WorkloadSpec, draw_args

ROOT = Path(__file__).resolve().parents[1]

USER_MODULE = """
import asyncio
import concurrent.futures
import time


def resize(n, scale=2):
    time.sleep(0.001)
    return bytes(n * scale)


async def aresize(n, scale=2):
    await asyncio.sleep(0.001)
    return bytes(n * scale)


resize_both = (resize, aresize)
lam = lambda n: n  # noqa: E731 - a lambda: no process pool can pickle it


def sample_args():
    for n in range(10):
        yield (n, 3)


def dies_half_way():
    yield (1,)
    raise OSError("the bucket went away")


def no_args():
    return None


def broken():
    raise RuntimeError("no data today")


NOT_A_FUNCTION = 42


def make_executor(workers):
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="mine")


class Broken(concurrent.futures.Executor):  # every job fails at once, on another thread

    def __init__(self, workers):
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)

    def submit(self, fn, /, *args, **kwargs):
        return self.pool.submit(int, "broken")

    def shutdown(self, wait=True, **kwargs):
        self.pool.shutdown(wait)
"""

SCENARIO = """
name = "photos"
jobs = 24
workers = 2
implementations = ["thread", "process", "TaskGroup"]

[[workload]]
fn = "{module}:resize_both"
args = "{module}:sample_args"
weight = 3

[[workload]]
fn = "{module}:resize"
coro = "{module}:aresize"
args = "sizes.jsonl"
weight = 1
name = "small"

[sweep]
workers = [1, 2]
"""


@pytest.fixture
def project(tmp_path, request, harness_as_users_run):
    """A directory holding the user's module (a name of its own per test, so that no
    import is shared between tests) and the environment of a run from it."""
    module = f"userjobs_{request.node.name.split('[')[0][5:]}"[:60]
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "sizes.jsonl").write_text("[1, 1]\n\n[2, 1]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # poolbench itself; the module comes from the current directory
    return tmp_path, module, env


def poolbench(cwd: Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poolbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_users_workload_from_the_command_line_into_sqlite_and_the_report(project):
    """A pair of forms, on our three backends, a coroutine contender, a stdlib contender
    and the user's own Executor, swept over two worker counts; and a lambda, which
    no process pool can take, skipped with the reason."""
    cwd, mod, env = project
    impls = ["thread", "process", "asyncio", "TaskGroup", "ProcessPoolExecutor", f"{mod}:make_executor"]
    out = poolbench(
        cwd,
        env,
        "run",
        *("--workload", f"{mod}:resize_both", "--args", f"{mod}:sample_args"),
        *(x for i in impls for x in ("--impl", i)),
        *("--workers", "1", "2", "--jobs", "20", "--repeats", "1", "--db", "results/r.db"),
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    df = store.load_measurements(str(cwd / "results/r.db"))
    assert set(df.scenario) == {"resize_both"} and set(df.variant) == {"workers=1", "workers=2"}
    assert set(df.implementation) == set(impls)
    assert df.ok.all(), df[["implementation", "error"]].to_string()
    assert (df.completed == 20).all() and (df.failed == 0).all()
    assert all(f.mix == {"resize_both": 20} for f in df.findings)
    # (asyncio and TaskGroup refuse a plain function: they ran the coroutine form of the pair)
    assert "Recommendation for resize_both" in out.stdout and "use " in out.stdout
    report = cwd / "results/reports/run-1.html"
    text = report.read_text()
    assert text.index('id="recommendation"') < text.index('id="run"')  # the report opens with it
    assert 'id="questions"' not in text  # the course's key questions: none of them was run

    if find_chromium() is not None:  # the page in a real browser: no error, every image drawn
        result = check_page(
            str(report),
            str(cwd / "page.png"),
            width=1280,
            height=1600,
            expressions={
                "sections": "Array.from(document.querySelectorAll('body > section')).map(s => s.id)",
                "broken": "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length",
                "answer": "document.querySelector('.recommendation p.answer').textContent",
            },
        )
        assert result.errors == [] and result.console == [], result.console
        assert result.results["sections"][0] == "recommendation" and result.results["broken"] == 0
        assert result.results["answer"].startswith(f"For {mod}:resize_both (closed loop, 20 jobs a measurement): use ")

    # the lambda: skipped on the process pool with the reason, in the table and the report; the thread runs it
    out = poolbench(
        cwd,
        env,
        *("run", "--workload", f"{mod}:lam", "--args", "[[1], [2]]", "--impl", "thread", "--impl", "process"),
        *("--workers", "1", "--jobs", "10", "--repeats", "1", "--db", "results/lam.db"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    df = store.load_measurements(str(cwd / "results/lam.db"))
    process = df[df.implementation == "process"].iloc[0]
    assert process.ok == 0 and process.error is None
    assert "process sends work to other processes by pickle" in process.skipped and "lambda" in process.skipped
    assert df[df.implementation == "thread"].ok.all()
    assert "skipped" in out.stdout
    assert "process sends work to other processes by pickle" in (cwd / "results/reports/run-1.html").read_text()


def test_a_scenario_file_with_a_sweep_and_a_mix_of_two_workloads(project):
    cwd, mod, env = project
    (cwd / "photos.toml").write_text(SCENARIO.format(module=mod))
    out = poolbench(cwd, env, "run", "photos.toml", "--repeats", "1", "--db", "r.db", "--no-report")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    df = store.load_measurements(str(cwd / "r.db"))
    assert sorted(set(df.variant)) == ["workers=1", "workers=2"]
    assert set(df.implementation) == {"thread", "process", "TaskGroup"} and df.ok.all(), df.error.tolist()
    for f in df.findings:  # both workloads of the mix ran, by weight, every job counted
        assert set(f.mix) == {"resize_both", "small"} and sum(f.mix.values()) == 24 and f.mix["resize_both"] > 12
    assert (df.completed == 24).all()
    # the scenario as run is stored with each measurement, the relative argument file made absolute
    assert df.params.iloc[0]["workloads"][1]["args"] == str(cwd / "sizes.jsonl")


def test_a_coroutine_function_runs_where_coroutines_run_and_is_skipped_elsewhere(project):
    cwd, mod, env = project
    out = poolbench(
        cwd,
        env,
        *("run", "--workload", f"{mod}:aresize", "--args", "[[1], [2]]"),
        *("--impl", "asyncio", "--impl", "gather+Semaphore", "--impl", "ThreadPoolExecutor"),
        *("--workers", "2", "--jobs", "10", "--repeats", "1", "--db", "r.db", "--no-report"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    df = store.load_measurements(str(cwd / "r.db")).set_index("implementation")
    assert df.loc["asyncio"].ok == 1 and df.loc["gather+Semaphore"].ok == 1
    assert df.loc["ThreadPoolExecutor"].skipped == (
        f"ThreadPoolExecutor runs plain functions, and {mod}:aresize is a coroutine function: give both forms "
        "(a pair (fn, async_fn), or coro = 'module:async_fn') to run it there"
    )


def test_an_executor_that_runs_jobs_inside_submit_is_measured_and_says_so(project):
    """A synchronous executor (each job run inside submit(), as one for debugging does,
    or benchmarks.inline, the no-op floor) has no workers to warm: the warm-up, which
    waits for every worker to hold a job at the same time, waited there for ever. It is
    measured, and its record says how it was prepared. The memory experiment, which
    needs jobs waiting, says why it cannot measure it."""
    cwd, mod, env = project
    inline = "benchmarks.inline:InlineExecutor"
    out = poolbench(
        cwd,
        env,
        *("run", "--workload", f"{mod}:resize_both", "--args", f"{mod}:sample_args"),
        *("--impl", inline, "--impl", "thread"),
        *("--workers", "2", "--jobs", "20", "--repeats", "1", "--db", "r.db", "--no-report"),
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    df = store.load_measurements(str(cwd / "r.db")).set_index("implementation")
    assert df.ok.all() and (df.completed == 20).all(), df.error.tolist()
    assert "its jobs ran inside submit(), in the submitting thread" in df.loc[inline].findings.prepared
    assert "every worker ran a job at once" in df.loc["thread"].findings.prepared
    out = poolbench(
        cwd, env, "run", "contenders.memory", "--impl", inline, "--quick", "--repeats", "1", "--db", "m.db", timeout=120
    )
    row = store.load_measurements(str(cwd / "m.db")).iloc[0]
    assert row.ok == 0 and "no job ever waits" in row.error, row.error


def test_a_warm_up_job_that_fails_is_named_at_once(project):
    """The warm-up waits for every worker to hold a job; one that failed instead was
    waited for until the limit (120 s), then blamed on workers slow to start."""
    cwd, mod, env = project
    out = poolbench(
        cwd,
        env,
        *("run", "--workload", f"{mod}:resize_both", "--args", f"{mod}:sample_args", "--impl", f"{mod}:Broken"),
        *("--workers", "2", "--jobs", "4", "--repeats", "1", "--db", "r.db", "--no-report"),
        timeout=60,
    )
    row = store.load_measurements(str(cwd / "r.db")).iloc[0]
    assert row.ok == 0, out.stdout[-2000:]
    assert "a job holding a worker failed before it was let go" in row.error, row.error
    assert "invalid literal for int() with base 10: 'broken'" in row.error, row.error
    # the memory experiment holds its one worker the same way (it waited 60 s)
    out = poolbench(
        cwd,
        env,
        *("run", "contenders.memory", "--impl", f"{mod}:Broken", "--quick", "--repeats", "1", "--db", "m.db"),
        timeout=50,
    )
    row = store.load_measurements(str(cwd / "m.db")).iloc[0]
    assert row.ok == 0 and "'broken'" in row.error, row.error


@pytest.mark.parametrize("impl", ["process", "ProcessPoolExecutor"])
def test_a_measurement_ends_when_its_runner_is_killed(project, impl):
    """The runner kills a measurement's whole process group at its time limit; a runner
    killed from outside (SIGKILL) cannot. The measurement then ends that group itself:
    the fork server and our worker, or a contender's workers, which watch nothing."""
    import contextlib
    import socket
    import tempfile

    from pools.testing import descendants, wait_process_gone

    cwd, mod, env = project
    (cwd / f"{mod}_started.py").write_text(
        "import os, socket, time\n\n\ndef started(where):\n"
        "    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:\n"
        "        s.sendto(str(os.getpid()).encode(), where)\n"
        "    time.sleep(600)\n"
    )
    short = tempfile.mkdtemp(dir="/tmp")  # a Unix socket's path has at most 107 bytes
    where = os.path.join(short, "started")
    tree: set[int] = set()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as told:
        told.bind(where)
        told.settimeout(120)
        runner = subprocess.Popen(
            [
                *(sys.executable, "-m", "poolbench", "run", "--workload", f"{mod}_started:started"),
                *("--args", f'[["{where}"]]', "--impl", impl, "--workers", "1", "--jobs", "2"),
                *("--repeats", "1", "--db", "r.db", "--no-report"),
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            job = int(told.recv(64))  # the job runs, in a worker process of the measurement
            tree = descendants(runner.pid)
            assert job in tree, (job, tree)
            runner.kill()
            runner.wait(30)
            deadline = time.monotonic() + 30
            left = [pid for pid in sorted(tree) if not wait_process_gone(pid, max(0.0, deadline - time.monotonic()))]
            assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
            tree = set()  # all gone: nothing to clean up
        finally:
            tree |= descendants(runner.pid) if runner.poll() is None else set()
            runner.kill()
            runner.wait(30)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            shutil.rmtree(short, ignore_errors=True)


def test_a_measurement_past_its_time_is_killed_with_its_whole_process_group(project, monkeypatch):
    """A contender's worker processes too: a hanging job on a ProcessPoolExecutor is
    recorded as timed out, and no process of that measurement is left running."""
    import psutil

    from scenarios import runner

    cwd, mod, _env = project
    (cwd / f"{mod}_hang.py").write_text(
        "import os, time\n\n\ndef hang(where):\n"
        "    open(os.path.join(where, f'pid-{os.getpid()}'), 'w').close()\n"
        "    time.sleep(600)\n"
    )
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setattr(runner, "MEASURE_TIMEOUT", 5)
    sc = spec.parse(
        {"name": "hangs", "jobs": 4, "workers": 2, "workload": [{"fn": f"{mod}_hang:hang", "args": [[str(cwd)]]}]},
        "test",
    )
    db = str(cwd / "hang.db")
    run_id = runner.run(runner.RunOptions(scenarios=[sc], implementations=("ProcessPoolExecutor",), repeats=1, db=db))
    row = store.load_measurements(db, run_id).iloc[0]
    assert row.ok == 0 and row.error == "timed out after 5s"
    pids = [int(p.name.removeprefix("pid-")) for p in cwd.glob("pid-*")]
    assert pids  # the job ran in a worker process of the contender
    for pid in pids:
        try:
            status = psutil.Process(pid).status()
        except psutil.NoSuchProcess:
            continue
        assert status == psutil.STATUS_ZOMBIE, (pid, status)  # dead, waiting to be reaped
    sys.modules.pop(f"{mod}_hang", None)


# ---------------------------------------------------------------- mistakes: named, and nothing written


def _runs(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]


@pytest.fixture
def in_project(project, monkeypatch):
    """Run the command in this process, from the project's directory (faster than a
    process each, and the same code path up to the first measurement)."""
    cwd, mod, _env = project
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    db = cwd / "results.db"
    conn = store.connect(str(db))  # a database with a run in it already
    store.create_run(conn, {**_META, "implementations": [], "scenarios": []})
    conn.close()
    yield cwd, mod, db
    sys.modules.pop(mod, None)


_META = {
    "started_at": "2025-01-01T00:00:00+00:00",
    "quick": False,
    "repeats": 1,
    "python": "3",
    "platform": "x",
    "cpu_count": 1,
    "cpu_model": "x",
    "loadavg_start": 0.0,
    "git_commit": None,
    "packages": {},
}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--workload", "{mod}.resize"], "field workload[0].fn: must be an import path 'module:function'"),
        (["--workload", "nosuchmodule_x:resize"], "module 'nosuchmodule_x': no module named 'nosuchmodule_x'"),
        (["--workload", "{mod}:resise"], "workload '{mod}:resise': '{mod}' has no attribute 'resise'; it has: "),
        (["--workload", "{mod}:NOT_A_FUNCTION"], "workload '{mod}:NOT_A_FUNCTION' must be callable"),
        (
            ["--workload", "{mod}:resize", "--args", "{mod}:broken"],
            "argument source '{mod}:broken' raised RuntimeError: no data today",
        ),
        (
            ["--workload", "{mod}:resize", "--args", "{mod}:dies_half_way"],
            "argument source '{mod}:dies_half_way' raised OSError after 1 items: the bucket went away",
        ),
        (["--workload", "{mod}:resize", "--args", "{mod}:no_args"], "must return or yield argument tuples"),
        (["--workload", "{mod}:resize", "--args", "missing.jsonl"], "argument file 'missing.jsonl' does not exist"),
        (
            ["--workload", "{mod}:resize", "--impl", "{mod}:NOT_A_FUNCTION"],
            "implementation '{mod}:NOT_A_FUNCTION' must be callable",
        ),
        (["--workload", "{mod}:resize", "--impl", "fastest"], "unknown implementation 'fastest'; valid: thread, "),
        (["--workload", "{mod}:resize", "--impl", "process[workerz=2]"], "implementation 'process[workerz=2]': "),
        (["bad.toml"], "bad.toml: not valid TOML: "),
        (["unknown_field.toml"], "unknown_field.toml: unknown field 'wrokers'; a scenario's fields are: name, "),
        (
            ["unknown_in_workload.toml"],
            "unknown_in_workload.toml: unknown field 'workload[0].arg'; a workload's fields are",
        ),
        (["bad_value.toml"], "bad_value.toml: field workers: Input should be greater than 0, got 0"),
        (
            ["bad_sweep.toml"],
            "bad_sweep.toml: sweep of queue_size, value -1: field queue_size: Input should be greater",
        ),
        (["nowhere.toml"], "nowhere.toml: no such scenario file"),
        (["nosuchscenario"], "unknown scenario 'nosuchscenario': not a file (.toml), nor one of: noop, cpu"),
    ],
)
def test_a_mistake_is_named_and_nothing_is_written(in_project, capsys, args, says):
    from poolbench.cli import main

    cwd, mod, db = in_project
    workload = f'[[workload]]\nfn = "{mod}:resize"\nargs = [[1]]\n'
    (cwd / "bad.toml").write_text('name = "x"\njobs = [\n')
    (cwd / "unknown_field.toml").write_text(f"wrokers = 4\n{workload}")
    (cwd / "unknown_in_workload.toml").write_text(f'[[workload]]\nfn = "{mod}:resize"\narg = [[1]]\n')
    (cwd / "bad_value.toml").write_text(f"workers = 0\n{workload}")
    (cwd / "bad_sweep.toml").write_text(f"{workload}[sweep]\nqueue_size = [4, -1]\n")
    size = db.stat().st_size
    argv = ["run", *(a.format(mod=mod) for a in args), "--repeats", "1", "--db", str(db)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("poolbench run: ") and says.format(mod=mod) in err, err
    assert _runs(db) == 1 and db.stat().st_size == size  # nothing half-written
    assert not (cwd / "results").exists()


def test_options_of_a_workload_need_the_workload(in_project, capsys):
    from poolbench.cli import main

    _cwd, _mod, db = in_project
    assert main(["run", "cpu", "--workers", "4", "--db", str(db)]) == 2
    assert "--workers describes the scenario of --workload" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--args", "[[1]]", "--db", str(db)])
    assert "--args belongs to a workload: give it after the --workload it is for" in capsys.readouterr().err


# ---------------------------------------------------------------- the parts, directly


def test_argument_sources_give_tuples(tmp_path):
    (tmp_path / "a.jsonl").write_text('[1, "x"]\n"one"\n\n{"k": 1}\n')
    assert draw_args(str(tmp_path / "a.jsonl"), 10) == [(1, "x"), ("one",), ({"k": 1},)]
    assert draw_args([[1, 2], 3, (4,)], 10) == [(1, 2), (3,), (4,)]
    assert draw_args([[1]] * 5, 2) == [(1,), (1,)]  # at most what the run needs
    assert draw_args(None, 10) == [()]
    (tmp_path / "bad.jsonl").write_text("[1]\n[2,\n")
    with pytest.raises(WorkloadError, match=r"bad.jsonl', line 2: not JSON"):
        draw_args(str(tmp_path / "bad.jsonl"), 10)
    with pytest.raises(WorkloadError, match="the argument list gave no arguments"):
        draw_args([], 10)


def test_a_workload_names_one_kind_of_job():
    with pytest.raises(ValueError, match="give either fn"):
        WorkloadSpec(fn="a:b", type="sleep", params={"ms": 1})
    with pytest.raises(ValueError, match="give fn, an import path"):
        WorkloadSpec()
    with pytest.raises(ValueError, match="'ms'"):  # the built-in type's own check, naming the field
        WorkloadSpec(type="sleep", params={"ms": -1})
    assert WorkloadSpec(fn="pkg.mod:fn").label == "fn" and WorkloadSpec(type="noop").label == "noop"


def test_the_built_in_scenarios_are_files_of_the_users_format():
    for group, folder in spec.BUILTIN_DIRS.items():
        files = sorted((ROOT / "scenarios" / folder).glob("*.toml"))
        assert [spec.load_file(f).name for f in files] == list(spec.names(group))
    assert "contenders.noop" in spec.names("contenders") and "cpu" in spec.names()


FALSE_CALLABLE = '''
import time


class Lookup:
    """A callable with a length: empty, so false, and callable all the same."""

    def __len__(self):
        return 0

    def __call__(self, n):
        time.sleep(0.005)
        return n


lookup = Lookup()


async def alookup(n):
    return n
'''


@pytest.mark.parametrize("with_coro", [False, True], ids=["alone", "with_coro"])
def test_load_times_a_callable_that_is_false(tmp_path, monkeypatch, with_coro):
    """A run at `load` times the user's function first (its mean duration makes the
    rate). A callable object that is false (an empty ``__len__``) is its plain form
    all the same: it is timed, not replaced by nothing (a TypeError stopping the run)
    or by its coroutine form (called without being awaited: a duration of ~0)."""
    from scenarios import runner

    module = f"falsejobs_{with_coro:d}"
    (tmp_path / f"{module}.py").write_text(FALSE_CALLABLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    workload = {"fn": f"{module}:lookup", "args": [[1]]} | ({"coro": f"{module}:alookup"} if with_coro else {})
    sc = spec.parse(
        {"name": "false", "jobs": 10, "workers": 1, "arrival": "poisson", "load": 1.0, "workload": [workload]}, "t"
    )
    assert sc.needs_duration()
    work = runner.plan(runner.RunOptions(scenarios=[sc], implementations=["thread"]))
    job_ms = work.scenarios[0].job_ms
    assert job_ms is not None and job_ms >= 4, job_ms  # each call sleeps 5 ms
    sys.modules.pop(module, None)
