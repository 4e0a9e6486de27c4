"""The ``pool_benchmark`` fixture, as a user's test suite runs it (pytester, in a
subprocess, with pytest-benchmark's own options), and its JSON read by the report."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import pools
from pools.testing import bench

pytest_plugins = ["pytester"]

# A user's test module: a plain function, a coroutine function, a lambda, a
# parametrized test, a sweep of workers, a test no implementation can serve.
USER_TESTS = """
import asyncio

import pytest

import pools


def square(x):
    return x * x


async def asquare(x):
    await asyncio.sleep(0)
    return x * x


ARGS = [(i,) for i in range(40)]
EXPECTED = [i * i for i in range(40)]


def test_square(pool_benchmark):
    out = pool_benchmark(
        square,
        ARGS,
        implementations=["thread", ("thread", {"name": "tuned"}), "process", "ThreadPoolExecutor", "ProcessPoolExecutor"],
        workers=2,
    )
    assert list(out) == [
        "thread", "thread(name='tuned')", "process", "ThreadPoolExecutor", "ProcessPoolExecutor"
    ]
    assert all(results == EXPECTED for results in out.values())


def test_coroutines(pool_benchmark):
    out = pool_benchmark(asquare, ARGS, workers=2)
    assert list(out) == ["asyncio", "asyncio.gather"] and out["asyncio"] == EXPECTED


def test_lambda_on_processes(pool_benchmark):
    out = pool_benchmark(lambda x: -x, ARGS, implementations=["thread", "process", "ProcessPoolExecutor"], workers=1)
    assert list(out) == ["thread"]
    assert set(pool_benchmark.skipped) == {"process", "ProcessPoolExecutor"}


@pytest.mark.benchmark(group="sizes")
@pytest.mark.parametrize("n", [5, 10])
def test_sizes(pool_benchmark, n):
    pool_benchmark(square, [(i,) for i in range(n)], implementations=["thread"], workers=[1, 2])


def test_nothing_can_run_it(pool_benchmark):
    pool_benchmark(asquare, ARGS, implementations=["thread", "ThreadPoolExecutor"])


def test_once_per_test(pool_benchmark):
    pool_benchmark(square, ARGS, implementations="thread", workers=1)
    with pytest.raises(pools.InvalidArgument, match="once per test"):
        pool_benchmark(square, ARGS, implementations="thread", workers=1)


def test_a_failing_job_fails_the_test(pool_benchmark):
    pool_benchmark(divmod, [(1, 0)], implementations=["thread"], workers=1)


def test_not_a_benchmark():
    pass
"""

CONFTEST = """
import pytest


@pytest.fixture(autouse=True)
def _no_leaks(leak_check):  # every pool and executor shut down, every process gone
    yield
"""


def _user_env() -> dict[str, str]:
    # A user's own pytest, not a worker of this suite's pytest-xdist: pytest-benchmark
    # reads PYTEST_XDIST_WORKER and turns itself off under xdist.
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch):
    for name in set(os.environ) - set(_user_env()):
        monkeypatch.delenv(name)


SQUARE = ("thread", "thread(name='tuned')", "process", "ThreadPoolExecutor", "ProcessPoolExecutor")
FAST = ("--benchmark-max-time=0.02", "--benchmark-min-rounds=2", "--benchmark-warmup=off")


def _run(pytester, *args: str, options: tuple[str, ...] = FAST):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", "-rs", *options, *args, timeout=300)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """USER_TESTS run once with --benchmark-json, in a pytest of its own. (A plain
    subprocess, not pytester: the report's test below imports pandas and numpy, which
    pytester's restore of sys.modules would unload, and numpy cannot load twice.)"""
    where = tmp_path_factory.mktemp("user_run")
    (where / "conftest.py").write_text(CONFTEST)
    (where / "test_user.py").write_text(USER_TESTS)
    out_json = where / "bench.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "-rs", *FAST]
    t0 = time.monotonic()
    run = subprocess.run(
        [*cmd, "--benchmark-json", str(out_json)],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=_user_env(),
    )
    result = pytest.RunResult(run.returncode, run.stdout.splitlines(), run.stderr.splitlines(), time.monotonic() - t0)
    return result, out_json


def test_each_outcome_and_the_implementations_left_out(user_run):
    result, _ = user_run
    result.assert_outcomes(passed=7, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_a_failing_job_fails_the_test _*",
            "E*ZeroDivisionError: integer division or modulo by zero",
            "*= pool_benchmark: implementations that could not run the function =*",
            "test_user.py::test_lambda_on_processes [[]process[]]: the 'process' backend sends each job*pickle*",
            "test_user.py::test_lambda_on_processes [[]ProcessPoolExecutor[]]: sends each job*by pickle*",
            "test_user.py::test_nothing_can_run_it [[]thread[]]: the 'thread' backend runs plain callables*",
            "SKIPPED*pool_benchmark: no implementation can run it: thread: *; ThreadPoolExecutor: runs plain*",
        ]
    )


def test_one_benchmark_per_implementation_in_a_shared_group(user_run):
    _, out_json = user_run
    raw = json.loads(out_json.read_text())
    by_name = {b["name"]: b for b in raw["benchmarks"]}
    square = [n for n in by_name if n.startswith("test_square[")]
    assert square == [
        "test_square[thread]",
        "test_square[thread(name='tuned')]",
        "test_square[process]",
        "test_square[ThreadPoolExecutor]",
        "test_square[ProcessPoolExecutor]",
    ]
    for name in square:
        b = by_name[name]
        assert b["group"] == "test_square" and b["fullname"] == f"test_user.py::{name}"
        assert b["extra_info"]["jobs"] == 40 and b["extra_info"]["workers"] == 2
        assert b["stats"]["rounds"] >= 2 and b["stats"]["median"] > 0
        # -benchmem: every job holds a future (and a queue entry) once submitted
        info = b["extra_info"]
        assert info["mem_bytes_per_job"] > 0 and info["mem_allocs_per_job"] >= 1, info
        assert info["mem_peak_bytes_per_job"] > 0, info
    assert by_name["test_coroutines[asyncio.gather]"]["extra_info"]["implementation"] == "asyncio.gather"
    assert by_name["test_square[process]"]["params"] == {"implementation": "process"}
    # A parametrized test: the implementation (and the workers, when swept) is one more parameter.
    sizes = {n: b for n, b in by_name.items() if n.startswith("test_sizes[")}
    assert set(sizes) == {f"test_sizes[{n}-thread-{w}w]" for n in (5, 10) for w in (1, 2)}
    assert {b["group"] for b in sizes.values()} == {"sizes"}  # the benchmark marker's group
    assert sizes["test_sizes[10-thread-2w]"]["params"] == {"n": 10, "implementation": "thread-2w"}
    assert by_name["test_lambda_on_processes[thread]"]["extra_info"]["workers"] == 1
    assert not any(n.startswith(("test_nothing", "test_a_failing")) for n in by_name)
    skipped = {(s["fullname"].split("::")[1], s["implementation"]) for s in raw["pool_benchmark_skipped"]}
    assert skipped == {
        ("test_lambda_on_processes", "process"),
        ("test_lambda_on_processes", "ProcessPoolExecutor"),
        ("test_nothing_can_run_it", "thread"),
        ("test_nothing_can_run_it", "ThreadPoolExecutor"),
    }


def test_the_report_reads_the_json(user_run):
    """The report's reader of pytest-benchmark JSON (reports/data.py) and its section."""
    from reports.data import load_benchmarks
    from reports.external import benchmarks_html

    _, out_json = user_run
    frame, meta, problem = load_benchmarks(str(out_json))
    assert problem is None and meta["path"] == str(out_json)
    rows = frame[frame.group == "test_square"].set_index("contender")
    assert list(rows.index) == list(SQUARE)
    assert (rows.jobs == 40).all() and (rows.jobs_per_s > 0).all()
    assert all(len(r) == rows.loc[c, "rounds"] for c, r in rows.round_jobs_per_s.items())
    html = benchmarks_html(types.SimpleNamespace(benchmarks=frame, bench_meta=meta))
    for contender in ("ProcessPoolExecutor", "thread(name=&#x27;tuned&#x27;)", "asyncio.gather", "thread-2w"):
        assert f"<td>{contender}</td>" in html, contender
    assert "test_square: " in html and "had the highest median round" in html
    assert html.count("data:image/png;base64,") == 1


def test_compare_and_histogram_work_as_pytest_benchmark_users_expect(pytester):
    # Looked up, not imported: pygal imports importlib_metadata, which takes over the
    # stdlib's discovery of distributions, and pytester's restore of sys.meta_path
    # would then leave this process finding no entry point at all.
    if importlib.util.find_spec("pygal") is None:
        pytest.skip("--benchmark-histogram needs pytest-benchmark[histogram] (pygal): pip install 'poolbench[bench]'")
    selection = ("-k", "test_square or test_coroutines")
    first = _run(pytester, *selection, "--benchmark-save=base")
    first.assert_outcomes(passed=2)
    again = _run(pytester, *selection, "--benchmark-compare=0001", "--benchmark-histogram=hist")
    again.assert_outcomes(passed=2)
    rows = {line.split()[0] + " " + line.split()[1] for line in again.stdout.lines if line.startswith("test_square[")}
    assert rows == {f"test_square[{impl}] {run}" for impl in SQUARE for run in ("(0001_base)", "(NOW)")}, rows
    again.stderr.fnmatch_lines(["*Generated histogram*hist-test_square.svg*"])
    svg = (pytester.path / "hist-test_square.svg").read_text()
    assert all(f"test_square[{impl}]" in svg.replace("&#x27;", "'").replace("&#39;", "'") for impl in SQUARE)


def test_benchmark_only_and_skip_count_it_as_a_benchmark(pytester):
    selection = ("-v", "-k", "test_square or test_not_a_benchmark")
    only = _run(pytester, *selection, "--benchmark-only")
    only.assert_outcomes(passed=1, skipped=1)
    only.stdout.fnmatch_lines(["test_user.py::test_square PASSED*", "test_user.py::test_not_a_benchmark SKIPPED*"])
    skip = _run(pytester, *selection, "--benchmark-skip")
    skip.assert_outcomes(passed=1, skipped=1)
    skip.stdout.fnmatch_lines(["test_user.py::test_square SKIPPED*", "test_user.py::test_not_a_benchmark PASSED*"])


def test_under_benchmark_disable_each_implementation_runs_once_untimed(pytester):
    result = _run(pytester, "-k", "test_square or test_coroutines", "--benchmark-disable")
    result.assert_outcomes(passed=2)
    assert "benchmark 'test_square'" not in result.stdout.str()


def test_without_pytest_benchmark_the_fixture_says_what_to_install(pytester):
    pytester.makepyfile(
        test_alone="def test_square(pool_benchmark):\n    pool_benchmark(abs, [(-1,)], implementations='thread')\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", "-p", "no:benchmark", timeout=300)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pool_benchmark needs pytest-benchmark*pip install 'poolbench[[]bench[]]'*"])


def test_the_example_in_the_readme_runs(pytester):
    example = Path(__file__).resolve().parents[1] / "examples" / "test_pool_benchmark_example.py"
    pytester.makepyfile(test_example=example.read_text())
    out_json = pytester.path / "bench.json"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error", *FAST, "--benchmark-json", str(out_json), timeout=300
    )
    result.assert_outcomes(passed=2)
    groups: dict[str, set[str]] = {}
    for b in json.loads(out_json.read_text())["benchmarks"]:
        groups.setdefault(b["group"], set()).add(b["param"])
    assert groups == {
        "test_checksum": {"thread", "process", "ThreadPoolExecutor", "ProcessPoolExecutor"},
        "fetch: workers": {f"{impl}-{w}w" for impl in ("asyncio", "asyncio.gather") for w in (4, 16, 64)},
    }


# ------------------------------------------------------------------ the parts, in this process


def square(x):
    return x * x


async def asquare(x):
    return x * x


@pytest.mark.parametrize(
    ("name", "fn", "words"),
    [
        ("asyncio.gather", square, ["coroutine functions", "square is a plain function"]),
        ("ThreadPoolExecutor", asquare, ["plain functions", "asquare is a coroutine function", "never be awaited"]),
        ("ProcessPoolExecutor", lambda x: x, ["pickle", "top level of a module"]),
        ("thread", asquare, ["'thread' backend runs plain callables", "asquare"]),
        ("asyncio", square, ["'asyncio' backend runs coroutine functions", "square"]),
        ("process", lambda x: x, ["'process' backend", "pickle"]),
    ],
)
def test_an_implementation_that_cannot_run_the_function_says_why(name, fn, words):
    with pytest.raises(bench.Unsupported) as info:
        bench.prepare(bench.implementation(name), fn, [(1,)], 1)
    assert info.value.implementation == name
    assert all(w in info.value.reason for w in words), info.value.reason


@pytest.mark.parametrize("name", ["thread", "asyncio", "ThreadPoolExecutor", "asyncio.gather"])
def test_every_implementation_is_warmed_then_runs_rounds(name):
    fn = asquare if "asyncio" in name else square
    prepared = bench.prepare(bench.implementation(name), fn, [(i,) for i in range(10)], 3)
    try:
        assert prepared.round() == [i * i for i in range(10)]
        assert prepared.round() == [i * i for i in range(10)]
    finally:
        prepared.close()


def test_warm_starts_every_worker_at_once(make_pool):
    pool = make_pool("thread", workers=3)
    bench.warm(pool.submit, 3)
    assert pool.stats().workers == 3 and pool.stats().succeeded == 3


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: bench.implementation("thred"), ["'thred'", "thread", "ProcessPoolExecutor", "asyncio.gather"]),
        (lambda: bench.implementation(("process", "spawn")), ["(name, {options})"]),
        (lambda: bench.implementations([]), ["at least one"]),
        (lambda: bench.check_args([1, 2]), ["args[0]", "tuple", "[(1,), ...]"]),
        (lambda: bench.check_args([]), ["at least one"]),
        (lambda: bench.check_args("abc"), ["list of argument tuples", "str"]),
        (lambda: bench.check_workers(0), ["workers", ">= 1", "0"]),
        (lambda: bench.check_workers([2, True]), ["workers"]),
    ],
)
def test_bad_arguments_name_the_value_and_the_constraint(call, words):
    with pytest.raises(pools.InvalidArgument) as info:
        call()
    assert all(w in str(info.value) for w in words), str(info.value)


def test_options_go_to_the_implementation():
    impl = bench.implementation(("thread", {"name": "tuned"}))
    assert impl.id == "thread(name='tuned')"
    prepared = bench.prepare(impl, square, [(2,)], 1)
    try:
        assert prepared.round() == [4]
    finally:
        prepared.close()
    with pytest.raises(pools.InvalidArgument, match="takes no options"):
        bench.prepare(bench.implementation(("asyncio.gather", {"x": 1})), asquare, [(1,)], 1)
