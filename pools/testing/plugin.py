"""The poolbench pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``pool_backend``: every name in ``pools.available_backends()``; a test class may
  narrow it with a ``backends = ("thread",)`` attribute.
- ``make_pool``: ``make_pool(**options)`` creates a pool of ``pool_backend`` (or
  ``make_pool("thread", ...)``); at teardown each pool is shut down, which must
  finish within ``SHUTDOWN_LIMIT`` seconds and leave every job in a terminal state.
- ``leak_check``: fails the test if it leaves a thread, process, asyncio task or
  open pool behind (see :mod:`pools.testing`). Request it, or make it autouse in
  a conftest: ``@pytest.fixture(autouse=True) def _no_leaks(leak_check): pass``.
- ``aio_benchmark``: pytest-benchmark for coroutine functions, which it does not
  support itself: ``aio_benchmark(async_fn, *args)`` times ``await async_fn(*args)``
  on one event loop kept for the whole test (needs pytest-benchmark).
- ``pool_benchmark``: ``pool_benchmark(fn, args, implementations=..., workers=...)``
  times a batch of jobs of ``fn`` (one per argument tuple in ``args``) on each
  implementation — the backends by name, ``ThreadPoolExecutor``,
  ``ProcessPoolExecutor``, ``asyncio.gather`` (see :mod:`pools.testing.bench`) —
  with pytest-benchmark: one benchmark per implementation, named
  ``test_x[thread]``, in one group, so ``--benchmark-json``, ``--benchmark-compare``
  and ``--benchmark-histogram`` treat them as their own. An implementation that
  cannot run ``fn`` is left out with the reason, in the terminal summary and in the
  JSON (``pool_benchmark_skipped``); the test is skipped if none can. Returns the
  last round's results by implementation. Needs pytest-benchmark
  (``pip install 'poolbench[bench]'``).

Race mode (:mod:`pools.testing.race`): ``--pools-race=N`` reruns every test N
times (``test_x[race0]``...), each under race mode with its own seed; a failure
prints its seed and the command that replays it, ``--pools-race-seed=S`` (one run
under seed S; with ``--pools-race=N``, runs under S, S+1...). The ``pools_race``
fixture is the ``RaceMode`` of the running test (None when race mode is off).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from .. import InvalidArgument, Pool, available_backends, create_pool
from . import bench, race
from ._leaks import find_leaks, snapshot

SHUTDOWN_LIMIT = 10.0
LEAK_WAIT = 10.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poolbench", "poolbench (pools.testing)")
    group.addoption(
        "--pools-race",
        type=int,
        default=None,
        metavar="N",
        help="rerun every test N times under race mode (a tiny switch interval, seeded yields and pauses at the "
        "pools' hand-off points); a failure prints the seed that replays it",
    )
    group.addoption(
        "--pools-race-seed",
        type=int,
        default=None,
        metavar="S",
        help="race mode with seed S: replays a failure that --pools-race printed (with --pools-race=N: S, S+1...)",
    )


_RACE_BASE = pytest.StashKey[int | None]()
_RACE_RUNS = pytest.StashKey[int]()
_RACE_SEED = pytest.StashKey[int]()
_RACE_FAILED = pytest.StashKey[list[tuple[str, int]]]()
_RACE_PARAM = "pools_race_run"


def _configure_race(config: pytest.Config) -> None:
    runs, seed = config.getoption("--pools-race", None), config.getoption("--pools-race-seed", None)
    if runs is not None and runs < 1:
        raise pytest.UsageError(f"--pools-race must be a number of runs >= 1, got {runs}")
    on = runs is not None or seed is not None
    config.stash[_RACE_RUNS] = runs or 1
    config.stash[_RACE_BASE] = (race.new_seed() if seed is None else seed) if on else None
    config.stash[_RACE_FAILED] = []


def pytest_report_header(config: pytest.Config) -> str | None:
    base = config.stash.get(_RACE_BASE, None)
    if base is None:
        return None
    return f"pools race mode: {config.stash[_RACE_RUNS]} run(s) per test, seeds from {base}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pool_backend" in metafunc.fixturenames:
        backends = getattr(metafunc.cls, "backends", None) or available_backends()
        metafunc.parametrize("pool_backend", list(backends))
    runs = metafunc.config.stash.get(_RACE_RUNS, 1)
    if runs > 1:
        metafunc.fixturenames.append(_RACE_PARAM)
        metafunc.parametrize(_RACE_PARAM, range(runs), ids=[f"race{i}" for i in range(runs)])


@pytest.fixture(autouse=True)
def pools_race(request: pytest.FixtureRequest) -> Iterator[race.RaceMode | None]:
    """The test's race mode (``--pools-race``, ``--pools-race-seed``), or None when off."""
    base = request.config.stash.get(_RACE_BASE, None)
    if base is None:
        yield None
        return
    callspec = getattr(request.node, "callspec", None)
    run = callspec.params.get(_RACE_PARAM, 0) if callspec is not None else 0
    seed = base + run
    request.node.stash[_RACE_SEED] = seed
    with race.race_mode(seed) as mode:
        yield mode


def _replay_target(nodeid: str) -> str:
    """The test's id without the rerun's parameter: ``t.py::test_a[race3]`` -> ``t.py::test_a``."""
    nodeid = re.sub(r"\[race\d+\]$", "", nodeid)
    return re.sub(r"-race\d+\]$", "]", nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    seed = item.stash.get(_RACE_SEED, None)
    if seed is not None and report.failed:
        replay = f"pytest --pools-race-seed={seed} '{_replay_target(item.nodeid)}'"
        report.sections.append(("pools race mode", f"failed under race mode with seed {seed}; replay: {replay}"))
        failed = item.config.stash[_RACE_FAILED]
        if (item.nodeid, seed) not in failed:
            failed.append((item.nodeid, seed))
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    failed = config.stash.get(_RACE_FAILED, [])
    if failed:
        terminalreporter.section("pools race mode: failures and their seeds")
        for nodeid, seed in failed:
            terminalreporter.write_line(
                f"{nodeid}: seed {seed}; replay: pytest --pools-race-seed={seed} '{_replay_target(nodeid)}'"
            )


@pytest.fixture
def make_pool(request: pytest.FixtureRequest) -> Iterator[Callable[..., Pool]]:
    made: list[Pool] = []

    def factory(backend: str | None = None, **options: Any) -> Pool:
        if backend is None:
            backend = request.getfixturevalue("pool_backend")
        pool = create_pool(backend, **options)
        made.append(pool)
        return pool

    yield factory
    problems = []
    for pool in made:
        t0 = time.monotonic()
        pool.shutdown(wait=True, timeout=SHUTDOWN_LIMIT / 2, cancel_pending=True)
        took = time.monotonic() - t0
        if took > SHUTDOWN_LIMIT:
            problems.append(f"{pool!r}: shutdown took {took:.1f}s (limit {SHUTDOWN_LIMIT}s)")
        stats = pool.stats()
        if not stats.conserved() or stats.queued or stats.busy or stats.retrying:
            problems.append(f"{pool!r}: jobs left unfinished after shutdown: {stats}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def leak_check() -> Iterator[None]:
    before = snapshot()
    yield
    leaks = find_leaks(before, timeout=LEAK_WAIT)
    if leaks:
        pytest.fail("leaked: " + "; ".join(leaks), pytrace=False)


@pytest.fixture
def aio_benchmark(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    import asyncio

    benchmark = request.getfixturevalue("benchmark")  # from pytest-benchmark
    loop = asyncio.new_event_loop()

    def run(async_fn: Callable[..., Any], *args: Any) -> Any:
        return benchmark(lambda: loop.run_until_complete(async_fn(*args)))

    try:
        yield run
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# ---------------------------------------------------------------------- pool_benchmark

_SKIPPED = pytest.StashKey[list[dict[str, str]]]()
_NEEDS = (
    "pool_benchmark needs pytest-benchmark, which is not installed here (or is disabled with -p no:benchmark): "
    "pip install 'poolbench[bench]' (or pip install pytest-benchmark)"
)


def pytest_configure(config: pytest.Config) -> None:
    # pool_benchmark stands on pytest-benchmark's `benchmark` fixture when that plugin
    # is active, so that --benchmark-only and --benchmark-skip count its tests as
    # benchmarks; without the plugin, the fixture says what to install.
    _configure_race(config)
    pm = config.pluginmanager
    active = pm.hasplugin("benchmark") or pm.hasplugin("pytest_benchmark.plugin")  # by entry point, or by -p
    config.stash[_SKIPPED] = []
    config.pluginmanager.register(_PoolBenchmarkFixture() if active else _NoBenchmark(), "poolbench-pool-benchmark")


class PoolBenchmark:
    """The value of the ``pool_benchmark`` fixture; call it once per test."""

    def __init__(self, request: pytest.FixtureRequest, benchmark: Any) -> None:
        self._request = request
        self._template = benchmark  # the test's own BenchmarkFixture: its options, its class
        self._used = False
        self._made = 0  # BenchmarkFixtures handed out
        #: implementation -> why it did not run
        self.skipped: dict[str, str] = {}

    def __call__(
        self,
        fn: Callable[..., Any],
        args: Any,
        *,
        implementations: Any = None,
        workers: int | list[int] | tuple[int, ...] | None = None,
        group: str | None = None,
    ) -> dict[str, list[Any]]:
        if self._used:
            raise InvalidArgument(
                "pool_benchmark runs once per test, as pytest-benchmark's benchmark does: put the other call in a "
                "test of its own, or parametrize the test"
            )
        self._used = True
        if not callable(fn):
            raise InvalidArgument(f"fn must be callable, got {fn!r:.60}")
        batch = bench.check_args(args)
        counts = bench.check_workers(workers)
        impls = bench.default_implementations(fn) if implementations is None else bench.implementations(implementations)
        group = group or self._template.group or self._request.node.name
        results: dict[str, list[Any]] = {}
        for impl in impls:
            for w in counts:
                label = impl.id if len(counts) == 1 else f"{impl.id}-{w}w"
                try:
                    prepared = bench.prepare(impl, fn, batch, w)
                except bench.Unsupported as e:
                    self._skip(label, e.reason)
                    continue
                except BaseException:
                    # The function failed in the untimed round: that error is the test's
                    # result, as when benchmark(fn) raises; the test's own BenchmarkFixture
                    # must not then warn that it was never used.
                    if not self._made:
                        self._template._mode = "pool_benchmark(...)"
                        self._template.has_error = True
                    raise
                try:
                    fixture = self._fixture(label, group)
                    fixture.extra_info.update(backend=label, implementation=impl.name, workers=w, jobs=len(batch))
                    results[label] = fixture(prepared.round)
                    if not fixture.disabled:
                        # -benchmem: a pass of its own, after the timed rounds
                        mem = bench.memory_per_job(prepared.submit, len(batch))
                        fixture.extra_info.update(mem.as_extra_info())
                finally:
                    prepared.close()
        if not results:
            reasons = "; ".join(f"{label}: {reason}" for label, reason in self.skipped.items())
            pytest.skip(f"pool_benchmark: no implementation can run it: {reasons}")
        return results

    def _skip(self, label: str, reason: str) -> None:
        self.skipped[label] = reason
        self._request.config.stash[_SKIPPED].append(
            {"fullname": self._request.node.nodeid, "implementation": label, "reason": reason}
        )

    def _fixture(self, label: str, group: str) -> Any:
        """A BenchmarkFixture of pytest-benchmark's, made as its own ``benchmark``
        fixture makes one (the session's options, the test's ``benchmark`` marker),
        named for the implementation: ``test_x[thread]``, or ``test_x[a-thread]`` in
        a parametrized test, as if the implementation were one more parameter."""
        node = self._request.node
        if not self._made:
            # The first is the test's own: pytest-benchmark warns about a test whose
            # `benchmark` fixture was never used.
            fixture = self._template
            fixture.group = group
        else:
            session = self._request.config._benchmarksession  # type: ignore[attr-defined]
            marker = node.get_closest_marker("benchmark")
            options = dict(marker.kwargs) if marker else {}
            if "timer" in options:
                from pytest_benchmark.utils import NameWrapper

                options["timer"] = NameWrapper(options["timer"])  # type: ignore[no-untyped-call]  # pytest-benchmark leaves it unannotated
            options["group"] = group
            fixture = type(self._template)(
                node,
                add_stats=session.benchmarks.append,
                logger=session.logger,
                warner=node.warn,
                disabled=session.disabled,
                **dict(session.options, **options),
            )
        self._made += 1
        callspec = getattr(node, "callspec", None)
        if callspec is None:
            fixture.name, fixture.fullname = f"{node.name}[{label}]", f"{node.nodeid}[{label}]"
            fixture.param, fixture.params = label, {"implementation": label}
        else:
            param = f"{callspec.id}-{label}"
            base = node.nodeid.removesuffix(f"[{callspec.id}]")
            fixture.name, fixture.fullname = f"{node.originalname}[{param}]", f"{base}[{param}]"
            fixture.param, fixture.params = param, {**callspec.params, "implementation": label}
        return fixture


class _PoolBenchmarkFixture:
    @pytest.fixture
    def pool_benchmark(self, request: pytest.FixtureRequest, benchmark: Any) -> PoolBenchmark:
        return PoolBenchmark(request, benchmark)

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
        skipped = config.stash[_SKIPPED]
        if skipped:
            output_json["pool_benchmark_skipped"] = list(skipped)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if config.stash[_SKIPPED]:
            terminalreporter.section("pool_benchmark: implementations that could not run the function")
            for s in config.stash[_SKIPPED]:
                terminalreporter.write_line(f"{s['fullname']} [{s['implementation']}]: {s['reason']}")


class _NoBenchmark:
    @pytest.fixture
    def pool_benchmark(self) -> None:
        pytest.fail(_NEEDS, pytrace=False)
