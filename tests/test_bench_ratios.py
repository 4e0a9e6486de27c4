"""The ratio lines that `make bench` prints after the pytest-benchmark tables."""

import importlib.util
import pathlib
import types

_spec = importlib.util.spec_from_file_location(
    "bench_conftest", pathlib.Path(__file__).parent.parent / "benchmarks" / "conftest.py"
)
bench_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_conftest)


def _bench(group, backend, jobs, median):
    return types.SimpleNamespace(
        group=group, extra_info={"backend": backend, "jobs": jobs}, stats=types.SimpleNamespace(median=median)
    )


def test_each_backend_is_divided_by_its_contender_in_the_same_group():
    lines = bench_conftest.throughput_ratios(
        [
            _bench("noop", "thread", 500, 0.010),  # 50,000 jobs/s
            _bench("noop", "ThreadPoolExecutor", 500, 0.005),  # 100,000 jobs/s
            _bench("noop", "process", 500, 0.050),
            _bench("sleep_1ms", "ThreadPoolExecutor", 200, 0.05),  # no thread row in this group
            _bench("map", "thread", 500, 0.01),  # no contender in this group
        ]
    )
    assert lines == ["noop: thread 50,000 jobs/s / ThreadPoolExecutor 100,000 jobs/s = 0.50x"]


def test_a_backend_with_two_contenders_gets_a_line_for_each():
    lines = bench_conftest.throughput_ratios(
        [
            _bench("noop", "asyncio (own loop)", 500, 0.010),
            _bench("noop", "asyncio.gather + Semaphore", 500, 0.020),
            _bench("noop", "asyncio.TaskGroup of consumers", 500, 0.004),
        ]
    )
    assert lines == [
        "noop: asyncio (own loop) 50,000 jobs/s / asyncio.gather + Semaphore 25,000 jobs/s = 2.00x",
        "noop: asyncio (own loop) 50,000 jobs/s / asyncio.TaskGroup of consumers 125,000 jobs/s = 0.40x",
    ]
