"""What the ``pool_benchmark`` fixture times: the user's function run as a batch of
jobs by one *implementation* — one of the pool backends (by name, with options) or
a stdlib contender (``ThreadPoolExecutor``, ``ProcessPoolExecutor``, ``asyncio.gather``
bounded by a Semaphore).

Every implementation is prepared the same way before its first timed round: made
with the same number of workers, each worker started and seen running a job at the
same moment (:func:`warm`), then one untimed round (the workers import the
function's module, caches fill). A round submits every job of the batch, then waits
for all of them and returns their results in order; a failed job raises its error.

Where an implementation cannot run the function — a plain function on asyncio, a
coroutine function on threads, a lambda to be pickled for a process — :func:`prepare`
raises :class:`Unsupported` with the reason, before anything is timed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import pickle
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import InvalidArgument, InvalidCallable, available_backends, create_pool
from ..lowlevel import is_coroutine_function
from . import jobs

__all__ = [
    "CONTENDERS",
    "WARM_TIMEOUT",
    "Implementation",
    "MemoryPerJob",
    "Prepared",
    "Unsupported",
    "check_args",
    "check_workers",
    "default_implementations",
    "implementation",
    "implementations",
    "memory_per_job",
    "prepare",
    "warm",
]

CONTENDERS = ("ThreadPoolExecutor", "ProcessPoolExecutor", "asyncio.gather")
WARM_TIMEOUT = 120.0  # seconds for every worker to start (process workers on a busy machine)


class Unsupported(Exception):
    """This implementation cannot run this function; ``reason`` says why."""

    def __init__(self, implementation: str, reason: str) -> None:
        super().__init__(f"{implementation}: {reason}")
        self.implementation = implementation
        self.reason = reason


@dataclass(frozen=True)
class Implementation:
    """A backend name (``pools.available_backends()``) or a contender
    (:data:`CONTENDERS`), with options for ``create_pool`` or the executor."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The name pytest-benchmark shows: ``process`` or ``process(start_method='spawn')``."""
        if not self.options:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in sorted(self.options.items()))})"


def implementation(spec: str | tuple[str, Mapping[str, Any]] | Implementation) -> Implementation:
    """``"thread"``, ``("process", {"start_method": "spawn"})`` or an Implementation."""
    if isinstance(spec, Implementation):
        impl = spec
    elif isinstance(spec, str):
        impl = Implementation(spec)
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        impl = Implementation(spec[0], dict(spec[1]))
    else:
        raise InvalidArgument(
            f"an implementation is a name or (name, {{options}}), e.g. 'thread' or ('process', "
            f"{{'start_method': 'spawn'}}), got {spec!r:.80}"
        )
    known = (*available_backends(), *CONTENDERS)
    if impl.name not in known:
        raise InvalidArgument(f"unknown implementation {impl.name!r}; the implementations are: {', '.join(known)}")
    return impl


def implementations(specs: Any) -> tuple[Implementation, ...]:
    """A list of implementation specs (see :func:`implementation`), or one alone."""
    one = isinstance(specs, (str, Implementation)) or (
        isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[1], Mapping)
    )
    if one:
        return (implementation(specs),)
    if isinstance(specs, Mapping) or not isinstance(specs, Iterable):
        raise InvalidArgument(f"implementations must be a list of names or (name, {{options}}), got {specs!r:.80}")
    out = tuple(implementation(s) for s in specs)
    if not out:
        raise InvalidArgument("implementations must name at least one implementation")
    return out


def default_implementations(fn: Callable[..., Any]) -> tuple[Implementation, ...]:
    """The implementations that run ``fn``'s kind: asyncio and ``asyncio.gather`` for a
    coroutine function; threads and processes, ours and the stdlib's, for a plain one."""
    names = ("asyncio", "asyncio.gather") if is_coroutine_function(fn) else ("thread", "process", *CONTENDERS[:2])
    return tuple(Implementation(n) for n in names if n in CONTENDERS or n in available_backends())


def warm(
    submit: Callable[..., concurrent.futures.Future[Any]], workers: int, hold: Callable[..., Any] = jobs.hold
) -> None:
    """Every worker runs a job at the same moment (held at a gate until all have
    arrived): each is started and has run a job before the first round.
    (``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` start workers on demand.)"""
    with jobs.Gate() as gate, jobs.Latch() as latch:  # the gate opens on leaving, whatever happens
        held = [submit(hold, gate, latch) for _ in range(workers)]
        jobs.wait_held(latch, held, WARM_TIMEOUT)
        gate.open()
        for job in held:
            job.result(WARM_TIMEOUT)


Round = Callable[[], list[Any]]
#: submits a round's jobs and returns what waits for them (the round, in two halves)
SubmitPhase = Callable[[], Round]


class Prepared:
    """An implementation made, warmed and ready: ``round()`` runs the batch once,
    ``submit()`` submits it and returns what collects its results (the memory pass
    looks between the two), ``close()`` shuts it down."""

    def __init__(self, impl: Implementation, round_: Round, close: Callable[[], Any], submit: SubmitPhase) -> None:
        self.implementation = impl
        self.round = round_
        self.submit = submit
        self._close = close

    def close(self) -> None:
        self._close()


def _submit_all(
    submit: Callable[..., concurrent.futures.Future[Any]], fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]
) -> tuple[Round, SubmitPhase]:
    def round_() -> list[Any]:
        futures = [submit(fn, *a) for a in args]
        return [f.result() for f in futures]

    def submit_phase() -> Round:
        futures = [submit(fn, *a) for a in args]
        return lambda: [f.result() for f in futures]

    return round_, submit_phase


@dataclass(frozen=True)
class MemoryPerJob:
    """What a job costs in memory (``go test -benchmem``'s B/op and allocs/op), from
    tracemalloc in a pass of its own, never during a timed round. Only this
    process's allocations are traced: a process pool's workers are not.

    ``bytes`` and ``allocations``: the memory and the number of memory blocks that
    the batch holds once every job is submitted (futures, queue entries, payloads;
    a result once its job ended), per job. ``peak_bytes``: the high-water mark of
    the whole round (submit, run, collect) above its start, per job."""

    bytes: float
    allocations: float
    peak_bytes: float
    jobs: int

    def as_extra_info(self) -> dict[str, float]:
        return {
            "mem_bytes_per_job": round(self.bytes, 1),
            "mem_allocs_per_job": round(self.allocations, 2),
            "mem_peak_bytes_per_job": round(self.peak_bytes, 1),
        }


def memory_per_job(submit: SubmitPhase, jobs: int) -> MemoryPerJob:
    """Run one round — ``submit()`` then the collect it returns — under tracemalloc
    (started and stopped here; already tracing, it is left on) and divide by ``jobs``."""
    own = not tracemalloc.is_tracing()
    gc.collect()
    if own:
        tracemalloc.start(1)
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        before = tracemalloc.take_snapshot()
        collect = submit()
        after = tracemalloc.take_snapshot()
        collect()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if own:
            tracemalloc.stop()
    # The snapshots' own memory is traced too: take it out.
    skip = (tracemalloc.Filter(False, tracemalloc.__file__),)
    diff = after.filter_traces(skip).compare_to(before.filter_traces(skip), "filename")
    n = max(1, jobs)
    return MemoryPerJob(
        bytes=max(0, sum(d.size_diff for d in diff)) / n,
        allocations=max(0, sum(d.count_diff for d in diff)) / n,
        peak_bytes=max(0, peak - start) / n,
        jobs=jobs,
    )


def prepare(impl: Implementation, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], workers: int) -> Prepared:
    """Make ``impl`` with ``workers`` workers, warm it, run one untimed round of
    ``fn`` over ``args``; :class:`Unsupported` if it cannot run ``fn``."""
    coro = is_coroutine_function(fn)
    if impl.name == "asyncio.gather":
        if not coro:
            raise Unsupported(impl.id, f"runs coroutine functions (async def), and {_name(fn)} is a plain function")
        return _prepared(impl, *_gather(fn, args, workers, impl.options))
    if impl.name in CONTENDERS:
        if coro:
            raise Unsupported(
                impl.id,
                f"runs plain functions, and {_name(fn)} is a coroutine function: its jobs would never be awaited",
            )
        if impl.name == "ProcessPoolExecutor":
            try:
                pickle.dumps((fn, args[0]), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # any pickling error: the reason, not a crash
                raise Unsupported(
                    impl.id,
                    f"sends each job to a worker process by pickle, and {_name(fn)} with its arguments cannot be "
                    f"pickled ({e}): use a function defined at the top level of a module",
                ) from e
            executor: concurrent.futures.Executor = concurrent.futures.ProcessPoolExecutor(workers, **impl.options)
        else:
            executor = concurrent.futures.ThreadPoolExecutor(workers, **impl.options)
        try:
            warm(executor.submit, workers)
        except BaseException:
            executor.shutdown(cancel_futures=True)
            raise
        return _prepared(impl, *_submit_all(executor.submit, fn, args), executor.shutdown)
    pool = create_pool(impl.name, workers=workers, queue_size=len(args), **impl.options)
    try:
        warm(pool.submit, workers, jobs.job_for(pool, jobs.hold))
        round_, submit_phase = _submit_all(pool.submit, fn, args)
        try:
            first = pool.submit(fn, *args[0])  # the backend's own check of the callable
        except InvalidCallable as e:
            raise Unsupported(impl.id, str(e)) from e
        first.result()
    except BaseException:
        pool.shutdown(timeout=WARM_TIMEOUT, cancel_pending=True)
        raise
    return _prepared(impl, round_, submit_phase, lambda: pool.shutdown(timeout=WARM_TIMEOUT, cancel_pending=True))


def _prepared(impl: Implementation, round_: Round, submit: SubmitPhase, close: Callable[[], Any]) -> Prepared:
    try:
        round_()  # untimed: imports in the workers, first-call costs
    except BaseException:
        close()
        raise
    return Prepared(impl, round_, close, submit)


def _gather(
    fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], workers: int, options: Mapping[str, Any]
) -> tuple[Round, SubmitPhase, Callable[[], None]]:
    if options:
        raise InvalidArgument(f"'asyncio.gather' takes no options, got {dict(options)!r}")
    loop = asyncio.new_event_loop()  # one loop for every round, as a server keeps its own

    async def one(limit: asyncio.Semaphore, a: tuple[Any, ...]) -> Any:
        async with limit:
            return await fn(*a)

    async def batch() -> list[Any]:
        limit = asyncio.Semaphore(workers)
        return await asyncio.gather(*(one(limit, a) for a in args))

    def submit_phase() -> Round:
        # The jobs as tasks, made but not yet run (the loop runs in collect).
        limit = asyncio.Semaphore(workers)
        tasks = [loop.create_task(one(limit, a)) for a in args]
        return lambda: loop.run_until_complete(asyncio.gather(*tasks))

    def close() -> None:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    return (lambda: loop.run_until_complete(batch())), submit_phase, close


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def check_args(args: Iterable[Any]) -> list[tuple[Any, ...]]:
    """The batch as a list of argument tuples (as ``itertools.starmap`` takes them)."""
    if isinstance(args, (str, bytes, Mapping)) or not isinstance(args, Iterable):
        raise InvalidArgument(f"args must be a list of argument tuples, one per job, got {type(args).__name__}")
    batch = list(args)  # an iterator would be spent after the first round
    if not batch:
        raise InvalidArgument("args must hold at least one argument tuple: each round runs one job per tuple")
    for i, a in enumerate(batch):
        if not isinstance(a, tuple):
            raise InvalidArgument(
                f"args[{i}] must be a tuple of the arguments of one job (as itertools.starmap takes them), got "
                f"{a!r:.60}: write [({a!r:.20},), ...] for one argument per job"
            )
    return batch


def check_workers(workers: int | Sequence[int] | None) -> tuple[int, ...]:
    """One number of workers for every implementation, or several (a sweep)."""
    if workers is None:
        return (os.cpu_count() or 1,)
    counts = (workers,) if isinstance(workers, int) else tuple(workers)
    for w in counts:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise InvalidArgument(f"workers must be an int >= 1 or a list of them, got {workers!r}")
    if not counts:
        raise InvalidArgument("workers must name at least one number of workers")
    return counts
