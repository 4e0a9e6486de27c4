"""Implementations: what a measurement runs — one of our backends with its options,
a contender (what a Python user would pick instead), or the user's own Executor.

An :class:`Implementation` says what it runs (plain or coroutine functions), whether
it pickles work to other processes, which of a scenario's options it honours
(priorities, timeouts, retries, a bounded queue), and how it is prepared before the
clock; :meth:`Implementation.open` starts it as a :class:`Session`, the one interface
the experiments drive: ``submit(fn, args)`` returning a ``concurrent.futures.Future``,
``map(fn, items)``, and the gauges our pools have::

    impl = resolve(ImplSpec(name="ProcessPoolExecutor"))
    with impl.open(workers=4, queue_size=100, overflow="block") as session:
        session.submit(fn, (1, 2)).result()

Names: our backends (``pools.registered_backends()``: thread, process, asyncio, dask),
with options (``ImplSpec(name="process", options={"start_method": "spawn"})``); the
contenders ``ThreadPoolExecutor``, ``ProcessPoolExecutor``, ``multiprocessing.Pool``,
``gather+Semaphore``, ``TaskGroup`` (consumer tasks on an ``asyncio.Queue``) and
``mpire``; and any import path ``module:factory``, a callable that takes the number
of workers and returns a ``concurrent.futures.Executor``.

Every implementation is made as its users make it (the standard library's defaults,
mpire's ``WorkerPool`` kept alive), then prepared alike by the experiment before its
clock starts (see :data:`PREPARED`). The contenders have no bound on their queues: the
load generator bounds the jobs in flight for them as our pools' queue does
(:class:`scenarios.experiments.load.Generator`). The asyncio ones, ours and the contenders, run
their event loop on a thread of their own, and the load generator submits to it from
its thread, alike for all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pools
from pools.lowlevel import run_private_loop

from .imports import LoadError, load_object
from .spec import ImplSpec, Scenario
from .workload import IMPORT_PATH

__all__ = [
    "CONTENDERS",
    "PREPARED",
    "Implementation",
    "ImplementationError",
    "Session",
    "default_for_user_code",
    "default_ours",
    "names",
    "resolve",
]

#: what a scenario may ask of an implementation beyond running jobs
FEATURES = ("priority", "timeout", "retry", "bounded_queue")
FEATURE_WORDS = {
    "priority": "priorities",
    "timeout": "per-job timeouts",
    "retry": "retries",
    "bounded_queue": "a bounded queue that rejects or gives up waiting",
}

#: How each kind of implementation is made and started; the experiment then prepares
#: every one alike (see scenarios.experiments.load.prepare), and the report prints both.
PREPARED = {
    "ours": "create_pool with the scenario's workers, queue_size and overflow",
    "executor": "made with max_workers=workers and the standard library's defaults",
    "multiprocessing.Pool": "multiprocessing.Pool(workers), the standard library's defaults",
    "gather+Semaphore": (
        "an event loop on its own thread and an asyncio.Semaphore(workers); a task per job, made as the job "
        "is submitted (asyncio.run_coroutine_threadsafe)"
    ),
    "TaskGroup": (
        "an event loop on its own thread; an asyncio.TaskGroup of `workers` consumer tasks on an unbounded "
        "asyncio.Queue, started before the clock"
    ),
    "mpire": (
        "mpire.WorkerPool(n_jobs=workers, keep_alive=True): with its default keep_alive=False it forks its "
        "workers again inside every map, and a warm-up would warm nothing that is timed"
    ),
    "user": "made by the factory with the number of workers",
}


class ImplementationError(LoadError):
    """An implementation cannot be used: an unknown name, a factory that does not
    import or is not callable, a backend not installed here, options it does not take."""


class Session:
    """One implementation, started: the interface the experiments drive.

    ``submit(fn, args)`` runs ``fn(*args)`` and returns a ``concurrent.futures.Future``;
    the options a scenario asks (priority, timeout, retry, wait) reach only the
    implementations that have them (:attr:`Implementation.features`)."""

    runs: str = "callables"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple,
        *,
        priority: int = 0,
        timeout: float | None = None,
        retry: pools.Retry | None = None,
        wait: float | None = None,
    ) -> concurrent.futures.Future:
        raise NotImplementedError

    def map(self, fn: Callable[..., Any], items: list[tuple]) -> list[Any]:
        """``fn(*item)`` for every item through the implementation's own ``map``, in order."""
        raise NotImplementedError

    def gauges(self) -> tuple[int, int] | None:
        """(jobs waiting, jobs running) now, when the implementation exposes them."""
        return None

    def retried(self) -> int:
        return 0

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pending() -> concurrent.futures.Future:
    fut: concurrent.futures.Future = concurrent.futures.Future()
    fut.set_running_or_notify_cancel()
    return fut


class PoolSession(Session):
    def __init__(self, backend: str, workers: int, queue_size: int, overflow: str, options: Mapping[str, Any]) -> None:
        super().__init__(workers)
        self.pool = pools.create_pool(backend, workers=workers, queue_size=queue_size, overflow=overflow, **options)
        self.runs = self.pool.capabilities.runs

    def submit(self, fn, args, *, priority=0, timeout=None, retry=None, wait=None):
        return self.pool.submit(fn, *args, priority=priority, timeout=timeout, retry=retry, wait=wait)

    def map(self, fn, items):
        return list(self.pool.map(fn, *zip(*items, strict=True)))

    def gauges(self):
        return self.pool.queued, self.pool.busy

    def retried(self) -> int:
        return self.pool.stats().retried

    def close(self) -> None:
        self.pool.shutdown()


class ExecutorSession(Session):
    def __init__(self, executor: concurrent.futures.Executor, workers: int) -> None:
        super().__init__(workers)
        self.executor = executor

    def submit(self, fn, args, **_options):
        return self.executor.submit(fn, *args)

    def map(self, fn, items):
        return list(self.executor.map(fn, *zip(*items, strict=True)))

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class MultiprocessingSession(Session):
    def __init__(self, workers: int) -> None:
        import multiprocessing

        super().__init__(workers)
        self.mp = multiprocessing.Pool(workers)

    def submit(self, fn, args, **_options):
        fut = _pending()
        self.mp.apply_async(fn, args, callback=fut.set_result, error_callback=fut.set_exception)
        return fut

    def map(self, fn, items):
        return self.mp.starmap(fn, items)

    def close(self) -> None:
        self.mp.close()
        self.mp.join()


class MpireSession(Session):
    def __init__(self, workers: int) -> None:
        from mpire import WorkerPool

        super().__init__(workers)
        self.wp = WorkerPool(n_jobs=workers, keep_alive=True)

    def submit(self, fn, args, **_options):
        fut = _pending()
        self.wp.apply_async(fn, args, callback=fut.set_result, error_callback=fut.set_exception)
        return fut

    def map(self, fn, items):
        return self.wp.map(fn, items)  # a tuple item is unpacked into the arguments

    def close(self) -> None:
        self.wp.stop_and_join()
        self.wp.terminate()


class _LoopSession(Session):
    """An event loop on a daemon thread, as our asyncio pool runs when started from
    synchronous code."""

    runs = "coroutines"

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=run_private_loop, args=(self.loop, ready), name="poolbench-contender-loop", daemon=True
        )
        self.thread.start()
        ready.wait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


class GatherSession(_LoopSession):
    """asyncio.gather with an asyncio.Semaphore: a task per job, ``workers`` at a time."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.sem = asyncio.Semaphore(workers)

    async def _one(self, fn, args):
        async with self.sem:
            return await fn(*args)

    def submit(self, fn, args, **_options):
        return asyncio.run_coroutine_threadsafe(self._one(fn, args), self.loop)

    def map(self, fn, items):
        async def gather() -> list[Any]:
            return await asyncio.gather(*(self._one(fn, item) for item in items))

        return asyncio.run_coroutine_threadsafe(gather(), self.loop).result()


class TaskGroupSession(_LoopSession):
    """The canonical asyncio worker pool: ``workers`` consumer tasks in a TaskGroup,
    taking jobs from an asyncio.Queue; each job's outcome goes to its future."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.started = threading.Event()
        self.main = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        self.started.wait()

    async def _main(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            consumers = [tg.create_task(self._consume()) for _ in range(self.workers)]
            self.started.set()
            await self.stop.wait()
            for task in consumers:
                task.cancel()

    async def _consume(self) -> None:
        while True:
            fn, args, fut = await self.queue.get()
            try:
                fut.set_result(await fn(*args))
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except BaseException as e:  # noqa: BLE001 - the job's failure is its future's
                fut.set_exception(e)

    def submit(self, fn, args, **_options):
        fut = _pending()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (fn, args, fut))
        return fut

    def map(self, fn, items):
        futures = [self.submit(fn, item) for item in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.main.result()
        super().close()


@dataclass(frozen=True)
class Implementation:
    name: str  # as named: "thread", "ThreadPoolExecutor", "mypkg.pools:make_executor"
    label: str  # as shown in tables
    kind: Literal["ours", "contender", "user"]
    runs: Literal["callables", "coroutines"]
    pickles: bool  # sends the function and arguments to other processes by pickle
    features: frozenset[str]
    prepared: str
    opener: Callable[[int, int, str], Session] = field(repr=False)
    requires: tuple[str, ...] = ()  # modules it needs

    def unavailable(self) -> str | None:
        """Why it cannot run on this machine, or None."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} is not installed here (pip install {' '.join(missing)}, or the bench extra)"
        return None

    def lacks(self, sc: Scenario) -> str | None:
        """Why it cannot honour what scenario ``sc`` asks, or None."""
        asked = []
        if len(sc.priorities) > 1:
            asked.append("priority")
        if sc.timeout is not None:
            asked.append("timeout")
        if sc.retries:
            asked.append("retry")
        if sc.overflow == "reject" or sc.wait is not None or (sc.sweep and "queue_size" in sc.sweep):
            asked.append("bounded_queue")
        missing = [f for f in asked if f not in self.features]
        if missing:
            return (
                f"{self.label} has no {' and no '.join(FEATURE_WORDS[f] for f in missing)}, which the scenario asks for"
            )
        return None

    def open(self, *, workers: int, queue_size: int, overflow: str) -> Session:
        return self.opener(workers, queue_size, overflow)


def _ours(spec: ImplSpec) -> Implementation:
    backend, options = spec.name, dict(spec.options)
    if backend not in pools.available_backends():
        raise ImplementationError(
            f"implementation {backend!r}: our backend is not available here (install its extra, e.g. "
            f"pip install 'poolbench[{backend}]'); available: {', '.join(pools.available_backends())}"
        )
    probe = pools.create_pool(backend, workers=1, **options)  # checks the options now, starts nothing
    caps = probe.capabilities
    probe.shutdown()
    return Implementation(
        name=backend,
        label=spec.shown,
        kind="ours",
        runs=caps.runs,
        pickles=backend == "process",
        features=frozenset(FEATURES),
        prepared=PREPARED["ours"],
        opener=lambda w, q, o: PoolSession(backend, w, q, o, options),
    )


def _contender(
    name: str, runs: str, pickles: bool, prepared: str, make: Callable[[int], Session], requires: tuple[str, ...] = ()
) -> Callable[[ImplSpec], Implementation]:
    def build(spec: ImplSpec) -> Implementation:
        if spec.options:
            raise ImplementationError(
                f"implementation {name!r} takes no options (it runs as its users make it), got {spec.options}"
            )
        return Implementation(
            name,
            spec.shown,
            "contender",
            runs,  # type: ignore[arg-type]
            pickles,
            frozenset(),
            prepared,
            lambda w, _q, _o: make(w),
            requires,
        )

    return build


CONTENDERS: dict[str, Callable[[ImplSpec], Implementation]] = {
    "ThreadPoolExecutor": _contender(
        "ThreadPoolExecutor",
        "callables",
        False,
        PREPARED["executor"],
        lambda w: ExecutorSession(concurrent.futures.ThreadPoolExecutor(w), w),
    ),
    "ProcessPoolExecutor": _contender(
        "ProcessPoolExecutor",
        "callables",
        True,
        PREPARED["executor"],
        lambda w: ExecutorSession(concurrent.futures.ProcessPoolExecutor(w), w),
    ),
    "multiprocessing.Pool": _contender(
        "multiprocessing.Pool", "callables", True, PREPARED["multiprocessing.Pool"], MultiprocessingSession
    ),
    "gather+Semaphore": _contender(
        "gather+Semaphore", "coroutines", False, PREPARED["gather+Semaphore"], GatherSession
    ),
    "TaskGroup": _contender("TaskGroup", "coroutines", False, PREPARED["TaskGroup"], TaskGroupSession),
    "mpire": _contender("mpire", "callables", True, PREPARED["mpire"], MpireSession, ("mpire",)),
}


def _user(spec: ImplSpec) -> Implementation:
    if spec.options:
        raise ImplementationError(
            f"implementation {spec.name!r} is an Executor factory: it takes no options (give them in the factory)"
        )
    factory = load_object(
        spec.name,
        what="implementation",
        require=callable,
        constraint="callable: a factory that takes the number of workers and returns a concurrent.futures.Executor",
    )

    def make(workers: int, _q: int, _o: str) -> Session:
        executor = factory(workers)
        if not isinstance(executor, concurrent.futures.Executor):
            raise ImplementationError(
                f"implementation {spec.name!r} returned {type(executor).__name__}, not a concurrent.futures.Executor"
            )
        return ExecutorSession(executor, workers)

    return Implementation(spec.name, spec.shown, "user", "callables", False, frozenset(), PREPARED["user"], make)


def names() -> tuple[str, ...]:
    """Every name an implementation can have here (import paths of factories aside)."""
    return (*pools.registered_backends(), *CONTENDERS)


def resolve(spec: ImplSpec | str) -> Implementation:
    """The implementation ``spec`` names; ImplementationError naming what is wrong."""
    if isinstance(spec, str):
        spec = ImplSpec(name=spec)
    if IMPORT_PATH.match(spec.name):
        return _user(spec)
    if spec.name in pools.registered_backends():
        try:
            return _ours(spec)
        except pools.InvalidArgument as e:
            raise ImplementationError(f"implementation {spec.shown!r}: {e}") from None
    if spec.name in CONTENDERS:
        return CONTENDERS[spec.name](spec)
    raise ImplementationError(
        f"unknown implementation {spec.name!r}; valid: {', '.join(names())}, or an import path "
        "'module:factory' of a function that takes the number of workers and returns a concurrent.futures.Executor"
    )


def default_ours() -> tuple[str, ...]:
    """Our backends on this machine; dask only when named: each of its jobs is a
    scheduler round trip, which would make a quick run last far longer."""
    return tuple(b for b in pools.available_backends() if b != "dask")


def default_for_user_code() -> tuple[str, ...]:
    """Which implementation serves the user's workload: ours and every contender installed here."""
    return (*default_ours(), *(n for n, build in CONTENDERS.items() if build(ImplSpec(name=n)).unavailable() is None))
