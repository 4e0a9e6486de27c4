"""The pool: one bounded priority queue and the job lifecycle that every backend
shares, written once. A backend (``pools.lowlevel.Backend``) supplies the workers and
drives the jobs through a ``Dispatcher``; everything else is here.

Data flow (every backend)::

    submit()/asubmit() ──admission──▶ heap of waiting jobs ──take / prefetch──▶ backend's workers
         │  (room = queue_size + idle workers;        ▲                       │
         │   block / wait= / reject)                  │ _requeue()            │ finish(outcome)
         ▼                                            │ (after back-off,      ▼
     QueueFull / PoolClosed                     Timer thread ◀── retry? ── attempt ended
                                                                            │ no retry
    job.cancel() ── _settle_outside() ── backend.stop_attempt()              ▼
                                                    future resolved (exactly once); its done-
                                                    callbacks run where it ended, or on the
                                                    callback thread (see _callbacks)

All counters and job states change under one lock (``Pool._lock``), so ``stats()``
is a consistent snapshot and the conservation law holds at every instant::

    submitted == succeeded + failed + cancelled + timed_out + queued + busy + retrying
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import heapq
import inspect
import itertools
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Generator, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar, TypeVarTuple, overload

from . import _race
from ._backend import Backend, Dispatcher
from ._batch import Batch, BatchOf, BatchSizer, batch_values, refused
from ._callbacks import CallbackRunner
from ._future import resolve_quietly
from ._job import Job, tag
from ._registry import backend_class, registered_backends
from ._timer import Timer
from ._types import (
    LIFECYCLE_OPTIONS,
    Capabilities,
    Ended,
    JobStatus,
    Outcome,
    PoolStats,
    Retry,
    RunningJob,
    ShutdownReport,
    WorkerOptions,
    check_int,
    check_number,
    percentiles,
)
from .exceptions import (
    InvalidArgument,
    InvalidCallable,
    JobTimeout,
    PoolBroken,
    PoolClosed,
    PoolError,
    QueueFull,
    UnknownBackend,
)
from .remote import payload_size

__all__ = ["Pool", "create_pool"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")  # the arguments of a job's function, so that a checker matches them to it

QUEUED, RUNNING, RETRYING = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = (
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.TIMED_OUT,
)
OK, ERROR, TIMEOUT, CRASH = Outcome.OK, Outcome.ERROR, Outcome.TIMEOUT, Outcome.CRASH

_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()  # started and not shut down
_live_lock = threading.Lock()  # a WeakSet cannot be listed while another thread changes it
_log = logging.getLogger("pools")

_RESERVOIR = 8192  # latest samples kept for the percentiles in stats()
CANCEL_GRACE = 1.0  # seconds that shutdown(timeout=T) gives stopped jobs to end, after T
EXIT_CALLBACKS_WAIT = 5.0  # seconds the last done-callbacks get at interpreter exit
#: A burst of submits (each less than ``YIELD_EVERY`` after the one before, from any
#: thread, with other jobs still waiting) lets the GIL go (``time.sleep(0)``) once per
#: ``YIELD_EVERY`` seconds of submitting, while that is cheap. The pool's own threads
#: (worker threads, the asyncio pool's loop thread, the process manager) need the GIL
#: to start and end jobs, and CPython makes a thread that wants it wait a whole switch
#: interval (5 ms) while another runs Python code: a burst of submits kept workers idle
#: with jobs waiting (the convoy effect). A yield that took more than ``YIELD_COSTLY``
#: means the threads let in kept the GIL to run Python code (CPU-bound jobs; a manager
#: with more to do than the GIL allows): there hand-offs cost more than they free, and
#: the next yields come four times rarer, down to one per ``YIELD_RAREST`` of
#: submitting; after that long without a submit, the next burst starts afresh. A lone
#: submit never yields, nor one that finds no other job waiting (one at a time: the
#: submitter waits for each result, and lets the GIL go there), nor one made on the
#: loop the pool's jobs run on (no thread of the pool waits there).
YIELD_EVERY = 0.0005
YIELD_COSTLY = 0.001
YIELD_RAREST = 0.064
# 3.13t: no GIL, nothing to let go (read once: one re-enabled later only brings the convoy back)
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()

# Race mode (pools.testing.race): None, or a function called with the name of each
# hand-off point reached ("submit", "take", "finish", "cancel", "timeout", "shutdown").
# Off, a hand-off point costs one global lookup and one comparison with None: a plain
# module global (Cython compiles this module), kept up to date by pools._race.
_race_hook: Callable[[str], None] | None = None


def _set_race_hook(hook: Callable[[str], None] | None) -> None:
    global _race_hook
    _race_hook = hook


_race.register(_set_race_hook)


def _make_backend(cls: type[Backend], dispatcher: Dispatcher, workers: int | None, options: dict[str, Any]) -> Backend:
    # An unknown option is named with the valid ones, not left to a TypeError.
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(cls).parameters
    if "backend" in options:
        raise InvalidArgument(
            f"the backend is Pool's first argument, given by position: Pool({options['backend']!r}, ...) "
            "or pools.create_pool(...)"
        )
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        own = [name for name, p in params.items() if p.kind in named and name not in ("dispatcher", "workers")]
        unknown = [key for key in options if key not in own]
        if unknown:
            raise InvalidArgument(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for backend "
                f"{cls.name or cls.__name__!r}; its options are: {', '.join(['workers', 'queue_size', 'overflow', 'name', *own])}; and the worker lifecycle "
                f"options: {', '.join(['initargs', *LIFECYCLE_OPTIONS])}"
            )
    return cls(dispatcher, workers=workers, **options)


def _worker_options(
    backend: str,
    caps: Capabilities,
    workers: int,
    initializer: Any,
    initargs: Any,
    max_tasks_per_worker: Any,
    max_memory_per_worker: Any,
    min_workers: Any,
    idle_timeout: Any,
) -> WorkerOptions:
    """Check the worker lifecycle options, and that the backend honours those given."""
    if initializer is not None and not callable(initializer):
        raise InvalidArgument(f"initializer must be callable or None, got {initializer!r}")
    if not isinstance(initargs, tuple):
        if isinstance(initargs, (str, bytes)) or not isinstance(initargs, Iterable):
            raise InvalidArgument(f"initargs must be a tuple of the initializer's arguments, got {initargs!r}")
        initargs = tuple(initargs)
    if initargs and initializer is None:
        raise InvalidArgument(f"initargs={initargs!r} was given without an initializer")
    if max_tasks_per_worker is not None:
        check_int("max_tasks_per_worker", max_tasks_per_worker, minimum=1)
    if max_memory_per_worker is not None:
        check_int("max_memory_per_worker (bytes of RSS)", max_memory_per_worker, minimum=1)
    check_number("idle_timeout", idle_timeout, minimum=0, inclusive=False, none_ok=True)
    if min_workers is not None:
        check_int("min_workers", min_workers, minimum=0)
        if min_workers > workers:
            raise InvalidArgument(f"min_workers must be <= workers ({workers}), got {min_workers!r}")
        if idle_timeout is None:
            raise InvalidArgument(
                f"min_workers={min_workers!r} needs idle_timeout= (seconds after which an idle worker "
                "above the minimum exits)"
            )
    given = {
        "initializer": initializer is not None,
        "max_tasks_per_worker": max_tasks_per_worker is not None,
        "max_memory_per_worker": max_memory_per_worker is not None,
        "min_workers": min_workers is not None,
        "idle_timeout": idle_timeout is not None,
    }
    if min_workers is None and idle_timeout is not None:
        min_workers = 0
    for option in LIFECYCLE_OPTIONS:
        why = caps.why_not(option) if given.get(option) else None
        if why is not None:
            raise InvalidArgument(f"{option}= does not apply to the {backend!r} backend: {why}")
    return WorkerOptions(initializer, initargs, max_tasks_per_worker, max_memory_per_worker, min_workers, idle_timeout)


_NEW, _OPEN, _CLOSING, _CLOSED = "new", "open", "closing", "closed"
OVERFLOW_POLICIES = ("block", "reject")


class Pool:
    """A pool of workers with a bounded priority queue: the job lifecycle that every
    backend shares. Make one with ``pools.create_pool(backend, ...)`` (or
    ``Pool(backend, ...)``). Thread-safe: any thread may submit.

    ``backend`` is a registered name or a ``pools.lowlevel.Backend`` subclass;
    ``workers``, ``queue_size``, ``overflow`` and ``name`` are the pool's options,
    the rest the backend's own (``start_method=`` for "process", say).

    Worker lifecycle options (each backend says which it honours in
    ``capabilities.lifecycle``, and refuses the others naming why):
    ``initializer(*initargs)`` runs once in each worker before its first job (a
    failing one breaks the pool: ``PoolBroken``); ``max_tasks_per_worker`` and
    ``max_memory_per_worker`` (bytes of RSS after a job) replace a worker;
    ``min_workers`` and ``idle_timeout`` let workers above the minimum exit after
    that many idle seconds, and come back on demand up to ``workers``.
    """

    def __init__(
        self,
        backend: str | type[Backend] = "thread",
        /,
        *,
        workers: int | None = None,
        queue_size: int = 1000,
        overflow: str = "block",
        name: str | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_worker: int | None = None,
        max_memory_per_worker: int | None = None,
        min_workers: int | None = None,
        idle_timeout: float | None = None,
        **options: Any,
    ) -> None:
        if isinstance(backend, str):
            cls, self.backend = backend_class(backend), backend
        elif isinstance(backend, type) and issubclass(backend, Backend):
            cls, self.backend = backend, backend.name or backend.__name__
        else:
            raise UnknownBackend(
                f"backend must be a registered name or a pools.lowlevel.Backend subclass, got {backend!r}"
            )
        if not isinstance(getattr(cls, "capabilities", None), Capabilities):
            raise InvalidArgument(
                f"backend {self.backend!r} ({cls.__qualname__}) declares no capabilities: give the class a "
                "'capabilities = pools.lowlevel.Capabilities(...)' attribute"
            )
        self.workers = check_int("workers", cls.default_workers() if workers is None else workers, minimum=1)
        self.queue_size = check_int("queue_size", queue_size, minimum=0)
        if overflow not in OVERFLOW_POLICIES:
            raise InvalidArgument(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self.overflow = overflow
        self.name = name or f"poolbench-{self.backend}-{id(self):x}"
        #: the worker lifecycle options, checked (``WorkerOptions``)
        self.options = _worker_options(
            self.backend,
            cls.capabilities,
            self.workers,
            initializer,
            initargs,
            max_tasks_per_worker,
            max_memory_per_worker,
            min_workers,
            idle_timeout,
        )

        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # blocked submitters
        self._drained = threading.Condition(self._lock)  # shutdown() waiting for the last job
        self._async_room: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._heap: list[tuple[int, int, Job[Any]]] = []
        self._seq = itertools.count()
        self._live: dict[int, Job[Any]] = {}  # every accepted job not yet terminal
        self._state = _NEW
        self._queued = self._running = self._retrying = self._dead_in_heap = 0
        # bursts of submits, from any thread (YIELD_EVERY): when the last submit was,
        # how long the burst has gone on since it last let the GIL go, and how long it
        # goes on before the next yield (written without the lock: a lost update only
        # moves a yield)
        self._submitted_at = self._burst = 0.0
        self._yield_gap = YIELD_EVERY
        self._submitted = self._succeeded = self._failed = self._cancelled = 0
        self._timed_out = self._rejected = self._retried = self._crashed = 0
        self._abandoned = self._recycled = 0
        self._broken: PoolBroken | None = None  # what a submit raises once the backend broke
        self._waits: collections.deque[float] = collections.deque(maxlen=_RESERVOIR)
        self._runs: collections.deque[float] = collections.deque(maxlen=_RESERVOIR)
        self._started_at = time.monotonic()
        self._timer = Timer(f"{self.name}-timer")
        self._callback_runner = CallbackRunner(f"{self.name}-callbacks")
        self._callbacks_deadline: float | None = None  # set by shutdown: how long they may still take
        self._shutdown_lock = threading.Lock()
        self._report: ShutdownReport | None = None
        self._stop_now = False  # a shutdown was interrupted: the next one stops everything at once
        self._shutting_down_on: int | None = None  # the thread running a shutdown, if one is
        self._closer: threading.Thread | None = None
        self._workers_started = False
        self._close_reason: str | None = None  # why intake closed, when not by shutdown()
        self._final_phase = False  # shutdown's deadline passed: no more retries
        self._shutdown_cancelled: list[int] = []  # ids of jobs that shutdown cancelled
        self._shutdown_killed: list[int] = []
        self._impl = _make_backend(cls, Dispatcher(self), workers, options)
        self._wake_locked = self._impl.wake_locked  # once per job: bound once
        self._carries_contextvars = self._impl.capabilities.carries_contextvars

    @property
    def capabilities(self) -> Capabilities:
        """What this pool's backend can do (a frozen value; see ``Capabilities``)."""
        return self._impl.capabilities

    @property
    def impl(self) -> Backend:
        """The backend object (``pools.lowlevel.Backend``): its own attributes, such as
        the asyncio backend's ``loop`` or the process backend's ``start_method``."""
        return self._impl

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Pool:
        """Start the workers (``submit`` and ``with pool`` do it for you). Idempotent."""
        if self._state is _OPEN:
            return self
        with self._shutdown_lock:  # one start at a time; shutdown() waits for it
            if self._state is _OPEN:
                return self
            if self._state is not _NEW:
                raise PoolClosed(f"pool {self.name} was shut down; create a new pool")
            # Listed before the exit flag is read: the exit hook sets the flag before it
            # lists the pools, so either it sees this pool (and shuts it down once this
            # start lets go of the shutdown lock) or this start sees the flag.
            with _live_lock:
                _live_pools.add(self)
            if _exiting:
                # Its workers would never run the job: the exit hook that finishes
                # the pools' jobs has run already (concurrent.futures refuses too).
                self._never_started()
                raise PoolClosed(
                    f"pool {self.name} cannot start after interpreter shutdown began: submit "
                    "before the main thread ends, or shut the pool down in your own exit hook"
                )
            self._started_at = time.monotonic()
            try:
                self._impl.start()
            except BaseException:
                self._never_started()
                raise
            self._workers_started = True
            with self._lock:
                # Open only now: a submit racing this start waits in start() above
                # instead of queueing a job that no worker exists for yet. Unless the
                # backend broke while starting (a worker's initializer failed).
                if self._state is _NEW:
                    self._state = _OPEN
            self._impl.after_start()
        return self

    def _never_started(self) -> None:
        with self._lock:
            self._state = _CLOSED
        with _live_lock:
            _live_pools.discard(self)

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.shutdown(wait=True)
        elif issubclass(exc_type, Exception):
            self.shutdown(wait=True, cancel_pending=True)
        else:  # KeyboardInterrupt, SystemExit: leave now, stop everything
            self.shutdown(wait=True, timeout=0, cancel_pending=True)

    async def __aenter__(self) -> Pool:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.ashutdown(wait=True)
        elif issubclass(exc_type, Exception):
            await self.ashutdown(wait=True, cancel_pending=True)
        else:
            await self.ashutdown(wait=True, timeout=0, cancel_pending=True)

    # ---------------------------------------------------------------- submission

    def _check_options(self, priority: Any, timeout: Any, retry: Any, wait: Any) -> None:
        if (
            type(priority) is int
            and retry is None
            and wait is None
            and (timeout is None or ((type(timeout) is float or type(timeout) is int) and 0 < timeout < math.inf))
        ):
            return  # the common cases, checked without a call
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidArgument(f"priority must be an int (higher runs first), got {priority!r}")
        check_number("timeout", timeout, minimum=0, inclusive=False, none_ok=True)
        check_number("wait", wait, minimum=0, inclusive=True, none_ok=True)
        if retry is not None and not isinstance(retry, Retry):
            raise InvalidArgument(f"retry must be a pools.Retry, e.g. Retry(attempts=3), or None; got {retry!r}")

    def _make_job(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        priority: int,
        timeout: float | None,
        retry: Retry | None,
        wait: float | None,
    ) -> Job[T]:
        self._check_options(priority, timeout, retry, wait)
        payload = self._impl.prepare(fn, args)
        ctxvars = contextvars.copy_context() if self._carries_contextvars else None
        return Job(self, fn, args, payload, priority, timeout, retry, ctxvars)

    def _has_room_locked(self) -> bool:
        # Waiting jobs are bounded by queue_size plus the workers idle right now, so
        # queue_size=0 is an unbuffered hand-off: accepted only when a worker can take it.
        return self._queued < self.queue_size + (self.workers - self._running)

    def _push_locked(self, job: Job[Any]) -> None:
        job._enqueued_at = time.monotonic()
        heapq.heappush(self._heap, (-job.priority, next(self._seq), job))
        self._queued += 1
        self._wake_locked()

    def _closed_error(self) -> PoolError:
        if self._broken is not None:
            err = PoolBroken(str(self._broken))
            err.__cause__ = self._broken.__cause__
            return err
        return PoolClosed(self._close_reason or f"pool {self.name} is shut down and takes no new jobs")

    def _reject_locked(self, job: Job[Any], why: str) -> QueueFull:
        self._rejected += 1
        return QueueFull(
            f"queue full ({self._queued} waiting, queue_size={self.queue_size}, "
            f"{self._running}/{self.workers} workers busy): {why}",
            job_id=job.job_id,
        )

    def _accept_locked(self, job: Job[Any]) -> None:
        home = self._impl.home_loop
        if home is not None and asyncio._get_running_loop() is home:
            # Submitted on the loop its job will end on: an asyncio future of that
            # loop, so gather()/wait() take it as it is rather than in a Task each.
            job.bind_loop(home)
        self._submitted += 1
        self._live[job.job_id] = job
        self._push_locked(job)

    # submit, asubmit and map are typed for a checker: a job of a coroutine function
    # (the asyncio backend) gives what the coroutine returns, any other what the
    # function returns; submit's arguments are matched to the function's parameters.

    @overload
    def submit(
        self,
        fn: Callable[[*Ts], Coroutine[Any, Any, T]],
        /,
        *args: *Ts,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job[T]: ...

    @overload
    def submit(
        self,
        fn: Callable[[*Ts], T],
        /,
        *args: *Ts,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job[T]: ...

    def submit(
        self,
        fn: Callable[[*Ts], Any],
        /,
        *args: *Ts,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job[Any]:
        """Queue ``fn(*args)`` and return its :class:`Job` (a Future).

        ``priority``: higher runs first, FIFO among equals. ``timeout``: seconds per
        attempt, after which the attempt is stopped with ``JobTimeout``.
        ``retry``: a :class:`Retry`. ``wait``: with ``overflow="block"``, the most
        seconds to wait for room before ``QueueFull`` (``None``: no limit).
        Keyword arguments for ``fn`` go through ``functools.partial``.
        """
        job = self._make_job(fn, args, priority, timeout, retry, wait)
        if self._state is _NEW:
            self.start()  # lazily, like ThreadPoolExecutor; start() is idempotent
        if _race_hook is not None:
            _race_hook("submit")
        with self._lock:
            if self._state is not _OPEN:
                raise self._closed_error()
            self._impl.check_open_locked()
            if not self._has_room_locked():
                self._wait_for_room_locked(job, wait)
            self._accept_locked(job)
        self._pace(job._enqueued_at)
        return job

    def _wait_for_room_locked(self, job: Job[Any], wait: float | None) -> None:
        if self.overflow == "reject":
            raise self._reject_locked(job, 'overflow="reject" drops jobs that find no room')
        self._impl.refuse_blocking("submit")
        deadline = None if wait is None else time.monotonic() + wait
        while not self._has_room_locked():
            if self._state is not _OPEN:
                raise self._closed_error()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self._reject_locked(job, f"no room within wait={wait}s")
            self._room.wait(remaining)
        if self._state is not _OPEN:
            raise self._closed_error()

    @overload
    async def asubmit(
        self,
        fn: Callable[[*Ts], Coroutine[Any, Any, T]],
        /,
        *args: *Ts,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job[T]: ...

    @overload
    async def asubmit(
        self,
        fn: Callable[[*Ts], T],
        /,
        *args: *Ts,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job[T]: ...

    async def asubmit(
        self,
        fn: Callable[[*Ts], Any],
        /,
        *args: *Ts,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job[Any]:
        """Like :meth:`submit`, for async code: waits for room without blocking
        the event loop. ``await`` the returned job for its result."""
        job = self._make_job(fn, args, priority, timeout, retry, wait)
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        if self._state is _NEW:
            self.start()
        if _race_hook is not None:
            _race_hook("submit")
        while True:
            with self._lock:
                if self._state is not _OPEN:
                    raise self._closed_error()
                self._impl.check_open_locked()
                if self._has_room_locked():
                    self._accept_locked(job)
                    break
                if self.overflow == "reject":
                    raise self._reject_locked(job, 'overflow="reject" drops jobs that find no room')
                if deadline is not None and loop.time() >= deadline:
                    raise self._reject_locked(job, f"no room within wait={wait}s")
                room = loop.create_future()
                self._async_room.append((loop, room))
            try:
                if deadline is None:
                    await room
                else:
                    await asyncio.wait_for(room, max(0.0, deadline - loop.time()))
            except TimeoutError:
                pass  # loop round: re-checks room, then rejects
            finally:
                if not room.done():  # gave up (timeout, cancelled): leave no entry behind
                    with self._lock:
                        try:
                            self._async_room.remove((loop, room))
                        except ValueError:
                            pass
        self._pace(job._enqueued_at)
        return job

    def _pace(self, queued_at: float) -> None:
        """A job was queued at ``queued_at``: in a burst of submits, let the pool's
        threads take the GIL now and then (see ``YIELD_EVERY``)."""
        step, self._submitted_at = queued_at - self._submitted_at, queued_at
        if step > YIELD_RAREST:  # quiet for a while: what comes next starts afresh
            self._burst, self._yield_gap = 0.0, YIELD_EVERY
        # Not back to back (the caller's own work, or it waited: maybe for the GIL), or
        # the pool keeps up (self._queued: an int read without the lock, GIL-atomic; a
        # hint): this submit adds nothing to the burst.
        if step > YIELD_EVERY or self._queued <= 1:
            return
        self._burst += step
        if self._burst >= self._yield_gap:
            self._burst = 0.0
            self._yield_gil()

    def _yield_gil(self) -> None:
        home = self._impl.home_loop
        if not _GIL or (home is not None and asyncio._get_running_loop() is home):
            return  # no GIL; or this is the thread the pool's jobs run on: none waits
        before = time.monotonic()
        time.sleep(0)  # releases the GIL: a thread waiting for it may take it
        if time.monotonic() - before <= YIELD_COSTLY:
            self._yield_gap = YIELD_EVERY
        else:
            self._yield_gap = min(self._yield_gap * 4, YIELD_RAREST)

    def _wake_room_locked(self) -> None:
        if self._room._waiters:  # type: ignore[attr-defined]  # skip notify()'s ownership check when idle
            self._room.notify()
        if self._async_room:
            # Wake every async waiter: each re-checks, so a waiter that gave up
            # cannot swallow the wake-up that another one needed.
            waiters, self._async_room = self._async_room, []
            for loop, fut in waiters:
                try:
                    loop.call_soon_threadsafe(resolve_quietly, fut)
                except RuntimeError:  # loop closed: its waiter is gone
                    pass

    @overload
    def map(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *iterables: Iterable[Any],
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Generator[T, None, None]: ...

    @overload
    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Generator[T, None, None]: ...

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Generator[Any, None, None]:
        """Lazily run ``fn`` over ``zip(*iterables)`` and yield results in order.

        At most ``workers + queue_size`` jobs are in flight (at least one), so an
        endless iterable is fine. If the consumer stops early or a job raises, the
        jobs still in flight are cancelled.

        Where a job crosses to another process (``capabilities.batches_map``: the
        process and Dask backends) and no ``timeout`` or ``retry`` is given, a job
        carries a batch of items, sized by the measured time of an item
        (``pools._batch``): each item keeps its own result and error, raised at its
        turn; but the pool's counters, ``max_tasks_per_worker`` and a crash count
        batches (a batch whose item failed counts as succeeded, but for a batch of one
        item; a worker that crashes fails its whole batch), and the items in flight
        are up to ``4 * workers`` batches of at most 10,000 items or 1 MiB each.
        """
        self._check_options(priority, timeout, retry, None)
        self._impl.prepare(fn, ())
        window = max(1, self.workers + self.queue_size)
        argsets = zip(*iterables, strict=False)
        if self.capabilities.batches_map and timeout is None and retry is None:
            batch = BatchOf(fn)
            # The function's own bytes, sent with every batch on backends that do not
            # keep it apart: the sizer counts the items' bytes, not these.
            fn_bytes = payload_size(self._impl.prepare(batch, ()))
            sizes = []
            for it in iterables:
                try:
                    sizes.append(len(it))  # type: ignore[arg-type]
                except (TypeError, OverflowError):  # not sized, or beyond an int of C
                    pass
            total = min(sizes) if sizes else (0 if not iterables else None)  # None: not known
            return self._map_batches(batch, fn_bytes, argsets, window, priority, BatchSizer(self.workers, total))
        return self._map(fn, argsets, window, priority, timeout, retry)

    def _map_batches(
        self,
        batch: BatchOf,
        fn_bytes: int,
        argsets: Iterator[tuple[Any, ...]],
        window: int,
        priority: int,
        sizer: BatchSizer,
    ) -> Generator[Any, None, None]:
        # in flight: (job, index of its first item, items, bytes of its arguments)
        pending: collections.deque[tuple[Job[Batch], int, int, int]] = collections.deque()
        limit = min(window, sizer.in_flight())
        exhausted = False
        first = 0
        try:
            while True:
                while not exhausted and len(pending) < limit:
                    items = tuple(itertools.islice(argsets, sizer.next_size()))
                    if not items:
                        exhausted = True
                        break
                    sizer.sent(len(items))
                    try:
                        job = self.submit(batch, first, items, priority=priority)
                    except InvalidCallable as err:
                        raise refused(self.backend, batch.fn, err) from err
                    pending.append((job, first, len(items), max(0, payload_size(job.payload) - fn_bytes)))
                    first += len(items)
                    del job
                if not pending:
                    return
                # Read before leaving the deque: interrupted while waiting, it is still cancelled below.
                outcome = pending[0][0].result()
                _, at, n, nbytes = pending.popleft()
                sizer.observe(outcome[0], n, max(nbytes, sum(len(v) for v in outcome[1] if v is not None)))
                yield from batch_values(at, outcome)
                del outcome
        finally:
            for job, _, _, _ in pending:
                job.cancel()

    def _map(
        self,
        fn: Callable[..., T],
        argsets: Iterable[tuple[Any, ...]],
        window: int,
        priority: int,
        timeout: float | None,
        retry: Retry | None,
    ) -> Generator[T, None, None]:
        pending: collections.deque[Job[T]] = collections.deque()
        try:
            for args in argsets:
                if len(pending) >= window:
                    yield _result_or_cancel(pending.popleft())
                pending.append(self.submit(fn, *args, priority=priority, timeout=timeout, retry=retry))
            while pending:
                yield _result_or_cancel(pending.popleft())
        finally:
            for job in pending:
                job.cancel()

    # ---------------------------------------------------------------- worker side

    def _take_locked(self) -> Job[Any] | None:
        """Pop the most urgent waiting job and mark it running (lock held)."""
        if self._running >= self.workers:
            return None
        heap = self._heap
        while heap:
            job = heapq.heappop(heap)[2]
            if job._status is QUEUED:
                self._mark_running_locked(job, time.monotonic())
                return job
            self._dead_in_heap -= 1  # cancelled while queued
        return None

    def _mark_running_locked(self, job: Job[Any], now: float) -> None:
        if _race_hook is not None:
            _race_hook("take")  # the lock is held: a pause here holds off submitters and finishers
        job._status = RUNNING
        job.attempt += 1
        self._queued -= 1
        self._running += 1
        self._waits.append(now - job._enqueued_at)
        job._started_at = now

    # A backend whose workers sit behind a pipe may hand a worker its next jobs
    # before the current one ends ("prefetch"), so that the worker never idles for
    # a round trip. A prefetched job left the heap but is still QUEUED (counted as
    # waiting, cancellable as waiting: _settle_outside calls the backend's stop_attempt
    # so that it makes sure it never starts) until the backend reports it started.

    def _take_prefetch_locked(self, fits: Callable[[Job[Any]], bool]) -> Job[Any] | None:
        """Pop the most urgent waiting job for a worker's backlog, if it ``fits``
        there (lock held)."""
        heap = self._heap
        while heap:
            job = heap[0][2]
            if job._status is not QUEUED:
                heapq.heappop(heap)
                self._dead_in_heap -= 1
                continue
            if not fits(job):
                return None
            heapq.heappop(heap)
            job._prefetched = True
            return job
        return None

    def _start_prefetched_locked(self, job: Job[Any], started_at: float) -> bool:
        """A prefetched job began to run at ``started_at`` (a ``time.monotonic()``
        value): mark it running. False if it was cancelled meanwhile."""
        if job._status is not QUEUED or not job._prefetched:
            return False
        job._prefetched = False
        self._mark_running_locked(job, started_at)
        return True

    def _unstart_locked(self, job: Job[Any], attempt: int) -> None:
        """Attempt ``attempt`` of ``job`` was marked running but its worker died
        before beginning it: the job waits again, and the attempt is not used."""
        if job._status is not RUNNING or job.attempt != attempt:
            return
        job._status = QUEUED
        job.attempt -= 1
        self._running -= 1
        self._queued += 1
        heapq.heappush(self._heap, (-job.priority, next(self._seq), job))
        self._wake_locked()

    def _unprefetch_locked(self, job: Job[Any]) -> None:
        """A prefetched job will not run where it was sent (its worker died or was
        replaced): back on the heap, still counted as waiting."""
        if job._status is QUEUED and job._prefetched:
            job._prefetched = False
            heapq.heappush(self._heap, (-job.priority, next(self._seq), job))
            self._wake_locked()

    def _finish_attempt(
        self, job: Job[Any], attempt: int, outcome: Outcome, value: Any = None, *, preempted: bool = False
    ) -> bool:
        """A backend reports how attempt ``attempt`` of ``job`` ended: ``OK`` with
        its value, or ``ERROR``/``TIMEOUT``/``CRASH`` with the exception. Returns
        False if the attempt had already been settled (cancelled, timed out): its
        outcome is then dropped."""
        with self._lock:
            ended = self._end_locked(job, attempt, outcome, value, preempted)
        if ended is None:
            return False
        self._settle_ended(job, ended)
        return True

    def _finish_and_take(
        self, job: Job[Any], attempt: int, outcome: Outcome, value: Any
    ) -> tuple[bool, Job[Any] | None]:
        """``_finish_attempt`` and ``_take_locked`` in one round of the lock, for a
        worker that goes straight on to its next job: under load this halves the
        worker's trips through the lock that every submitter needs too. Returns
        (whether the outcome counted, the next job or None)."""
        with self._lock:
            ended = self._end_locked(job, attempt, outcome, value)
            nxt = self._take_locked() if ended is not None else None
        if ended is None:
            return False, None
        self._settle_ended(job, ended)
        return True, nxt

    def _end_locked(
        self, job: Job[Any], attempt: int, outcome: Outcome, value: Any, preempted: bool = False
    ) -> Ended | None:
        """The bookkeeping half of ``_finish_attempt`` (lock held). Returns what
        ``_settle_ended`` needs, or None if the attempt was settled already."""
        if job._status is not RUNNING or job.attempt != attempt:
            return None
        delay = None
        self._running -= 1
        ran = time.monotonic() - job._started_at
        self._runs.append(ran)
        if job.timeout is not None and ran >= job.timeout and outcome is not CRASH:
            # An attempt that ends past its deadline timed out, whatever it returned:
            # so a job that notices its deadline and returns cannot race the clock.
            outcome, value = TIMEOUT, self._timeout_error(job, attempt)
        if preempted:
            self._impl.preempted_locked(job)
        if outcome is OK:
            job._status = SUCCEEDED
            self._succeeded += 1
        else:
            if outcome is CRASH:
                self._crashed += 1
            if (
                job.retry is not None
                and attempt < job.retry.attempts
                and isinstance(value, job.retry.on)
                and not self._final_phase
            ):
                job._status = RETRYING
                self._retrying += 1
                self._retried += 1
                delay = job.retry.delay(attempt)
            elif outcome is TIMEOUT:
                job._status = TIMED_OUT
                self._timed_out += 1
            else:
                job._status = FAILED
                self._failed += 1
        if delay is None:
            del self._live[job.job_id]
            self._release_locked(job, keep_slot=preempted)
        if self._room._waiters or self._async_room:  # type: ignore[attr-defined]
            self._wake_room_locked()
        if self._state is not _OPEN:
            self._check_drained_locked()
        return outcome, value, delay

    @staticmethod
    def _release_locked(job: Job[Any], *, keep_slot: bool) -> None:
        """The job ended for good: let go of the user's callable, arguments and
        contextvars (as a ``concurrent.futures`` future holds no reference to its
        call: a pool must not extend the life of the user's objects past their job),
        and of what only a running attempt needs: the caller may keep many jobs for
        long, and the garbage collector would walk them again and again. A backend
        still stopping the attempt (``keep_slot``) reads its ``backend_slot`` after
        this; a worker that took the job reads ``fn`` and ``args`` before it
        checks that the job is still running (see the thread backend), and a
        backend reads ``payload`` only under the lock, to send the job."""
        job.fn = job.args = job.submitter_context = job.payload = None
        if not keep_slot:
            job.backend_slot = None

    def _settle_ended(self, job: Job[Any], ended: Ended) -> None:
        """The other half (lock not held): resolve the future, or arm the retry."""
        if _race_hook is not None:
            _race_hook("finish")  # counted as ended, its future not resolved yet
        outcome, value, delay = ended
        if delay is not None:
            if not self._timer.call_later(delay, self._requeue, job):
                job.cancel()  # shutdown stopped the timer meanwhile: no retry will come
        elif outcome is OK:
            job.set_result(value)
        else:
            tag(value, job.job_id)
            job.set_exception(value)

    def _settle_timeout(self, job: Job[Any], attempt: int, *, preempted: bool) -> bool:
        """The deadline of a running attempt passed: fail or retry it with JobTimeout.
        ``preempted``: settled by the pool's clock while the work may still run."""
        if _race_hook is not None:
            _race_hook("timeout")
        return self._finish_attempt(job, attempt, TIMEOUT, self._timeout_error(job, attempt), preempted=preempted)

    @staticmethod
    def _timeout_error(job: Job[Any], attempt: int) -> JobTimeout:
        return JobTimeout(
            f"job {job.job_id} (attempt {attempt}) ran past its timeout of {job.timeout}s",
            job_id=job.job_id,
        )

    def _requeue(self, job: Job[Any]) -> None:
        with self._lock:
            if job._status is not RETRYING:
                return  # cancelled during the back-off
            self._retrying -= 1
            job._status = QUEUED
            self._push_locked(job)

    def _check_drained_locked(self) -> None:
        if self._state is not _OPEN and not (self._queued or self._running or self._retrying):
            self._drained.notify_all()

    def _cancel(self, job: Job[Any]) -> bool:
        return self._settle_outside(job, CANCELLED, None)

    def _cancel_waiting(self, job: Job[Any]) -> bool:
        """Cancel ``job`` only if it has not begun (``concurrent.futures``' cancel, which
        ``Executor.map`` gives the calls it leaves behind)."""
        return self._settle_outside(job, CANCELLED, None, only_waiting=True)

    def _settle_outside(
        self, job: Job[Any], final: JobStatus, exc: BaseException | None, only_waiting: bool = False
    ) -> bool:
        """End ``job`` in state ``final`` whatever it is doing (cancel, pool broken),
        or, ``only_waiting``, only if it waits (queued or between attempts)."""
        if _race_hook is not None:
            _race_hook("cancel")
        with self._lock:
            status = job._status
            if only_waiting and (
                status is RUNNING
                or (status is QUEUED and job._prefetched and not self._impl.claim_prefetched_locked(job))
            ):
                return False  # begun (a job sent ahead: its worker began it before the backend heard)
            stop = status is RUNNING  # the backend stops the work
            if status is QUEUED:
                self._queued -= 1
                if job._prefetched:
                    job._prefetched = False
                    stop = True  # sent ahead: the backend must see that it never starts
                else:
                    self._dead_in_heap += 1
                    if self._dead_in_heap > 1024 and self._dead_in_heap * 2 > len(self._heap):
                        self._compact_heap_locked()
            elif status is RETRYING:
                self._retrying -= 1
            elif status is RUNNING:
                self._running -= 1
                self._runs.append(time.monotonic() - job._started_at)
                self._impl.preempted_locked(job)
            else:
                return False
            job._status = final
            if final is CANCELLED:
                self._cancelled += 1
            else:
                self._failed += 1
            del self._live[job.job_id]
            self._release_locked(job, keep_slot=stop)  # the backend's stop_attempt may read them
            attempt = job.attempt
            self._wake_room_locked()
            self._check_drained_locked()
        if _race_hook is not None:
            _race_hook("cancel")  # settled, the work not told to stop yet
        if stop:
            self._impl.stop_attempt(job, attempt)
        if exc is None:
            concurrent.futures.Future.cancel(job)
            concurrent.futures.Future.set_running_or_notify_cancel(job)
        else:
            tag(exc, job.job_id)
            job.set_exception(exc)
        return True

    def _break(self, cause: BaseException, reason: str | None = None) -> None:
        """The backend cannot go on: close intake (``reason``: what a later submit
        says) and fail every unfinished job with PoolBroken."""
        with self._lock:
            if reason is not None and self._close_reason is None:
                self._close_reason = reason
            if self._broken is None and self._state in (_NEW, _OPEN):
                self._broken = PoolBroken(reason or f"pool {self.name} is broken: {cause!r}")
                self._broken.__cause__ = cause
            self._close_intake_locked()
            victims = list(self._live.values())
        for job in victims:
            err = PoolBroken(f"pool {self.name} broke and cannot run job {job.job_id}: {cause!r}", job_id=job.job_id)
            err.__cause__ = cause
            self._settle_outside(job, FAILED, err)

    def _close_and_cancel(self, reason: str) -> None:
        """The backend can no longer run jobs (its event loop ended): close intake with
        ``reason`` and cancel every unfinished job."""
        with self._lock:
            self._close_reason = reason
            self._close_intake_locked()
        self._cancel_jobs((QUEUED, RETRYING, RUNNING), record=False)

    def _compact_heap_locked(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2]._status is QUEUED]
        heapq.heapify(self._heap)
        self._dead_in_heap = 0

    # ---------------------------------------------------------------- stats

    def stats(self) -> PoolStats:
        """A frozen, consistent snapshot of the pool's gauges and counters."""
        with self._lock:
            waits = list(self._waits)
            runs = list(self._runs)
            counts = (
                self._running,
                self._queued,
                self._retrying,
                self._submitted,
                self._succeeded,
                self._failed,
                self._cancelled,
                self._timed_out,
                self._rejected,
                self._retried,
                self._crashed,
                self._abandoned,
            )
            recycled, alive = self._recycled, self._impl.alive_locked() if self._workers_started else 0
        w50, w95, w99 = percentiles(waits)
        r50, r95, r99 = percentiles(runs)
        return PoolStats(
            self.backend,
            self.workers,
            *counts,
            w50,
            w95,
            w99,
            r50,
            r95,
            r99,
            time.monotonic() - self._started_at,
            recycled,
            alive,
        )

    def running_jobs(self) -> list[RunningJob]:
        """A snapshot of the attempts running now, longest-running first (for a
        debugging view: ``poolbench serve --debug-endpoints``' ``/debug/threads``)."""
        now = time.monotonic()
        with self._lock:
            running = [
                (job.job_id, job.attempt, job.fn, job._started_at)
                for job in self._live.values()
                if job._status is RUNNING
            ]
        return sorted(
            (
                RunningJob(job_id, attempt, _qualname(fn), started, now - started)
                for job_id, attempt, fn, started in running
            ),
            key=lambda r: r.started_at,
        )

    # The three gauges are read without the lock (GIL: an int read is atomic); a
    # free-threaded build reads them under it, or makes the counters atomic.

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker now (a cheap gauge; ``stats()`` for a snapshot)."""
        return self._queued

    @property
    def busy(self) -> int:
        """Jobs running now (a cheap gauge; ``stats()`` for a snapshot)."""
        return self._running

    @property
    def abandoned(self) -> int:
        """Threads still running a job that was timed out or cancelled (thread
        backend), without the cost of a full ``stats()`` snapshot."""
        return self._abandoned

    @property
    def closed(self) -> bool:
        return self._state in (_CLOSING, _CLOSED)

    @property
    def broken(self) -> bool:
        """The backend broke (a failing ``initializer``, say): every submit raises ``PoolBroken``."""
        return self._broken is not None

    # ---------------------------------------------------------------- size

    def resize(self, workers: int) -> None:
        """Let ``workers`` jobs run at once from now on (``stats().workers``). Growing
        starts workers (at once, or on demand above ``min_workers``); shrinking lets
        the running jobs finish (none is cancelled) and the extra workers exit as
        they come free."""
        n = check_int("workers", workers, minimum=1)
        why = self.capabilities.why_not("resize")
        if why is not None:
            raise InvalidArgument(f"resize() does not apply to the {self.backend!r} backend: {why}")
        low = self.options.min_workers
        if low is not None and n < low:
            raise InvalidArgument(f"workers must be >= min_workers ({low}), got {n!r}")
        with self._lock:
            if self._state in (_CLOSING, _CLOSED):
                raise self._closed_error()
            self.workers = n
            if self._workers_started:
                self._impl.resize_locked(n)
                if len(self._heap) > self._dead_in_heap:
                    self._wake_locked()
            self._room.notify_all()  # room changed with the size
            self._wake_room_locked()

    # ---------------------------------------------------------------- shutdown

    def shutdown(
        self, wait: bool = True, *, timeout: float | None = None, cancel_pending: bool = False
    ) -> ShutdownReport:
        """Stop taking jobs (``PoolClosed``), let running and waiting jobs finish
        for up to ``timeout`` seconds (``None``: as long as they take), then cancel
        what is left, stop every worker and return a :class:`ShutdownReport`.

        ``cancel_pending=True`` cancels waiting jobs at once instead of running them.
        ``wait=False`` returns at once; the same steps run on a background thread
        and a later ``shutdown()`` returns the final report. Calling it again is safe.
        A shutdown cut short (Ctrl-C while it waits) leaves the next one, the exit
        hook's say, to stop everything at once. Called from a done-callback that the
        shutdown itself runs, it returns at once, as with ``wait=False``.
        """
        check_number("timeout", timeout, minimum=0, inclusive=True, none_ok=True)
        if wait and self._shutting_down_on == threading.get_ident():
            # From inside this thread's own shutdown (a done-callback of a job that it
            # cancels): waiting would wait for itself. That shutdown finishes the job.
            wait = False
        if wait and self._report is None:
            self._impl.refuse_blocking("shutdown")
        if wait:
            return self._shutdown(timeout, cancel_pending)
        with self._lock:
            self._close_intake_locked()
        if cancel_pending:
            self._cancel_jobs((QUEUED, RETRYING), only_waiting=True)
        # Never block here: a blocking shutdown may hold the lock for its whole drain.
        if self._shutdown_lock.acquire(blocking=False):
            try:
                if self._report is not None:
                    return self._report
                if self._closer is None:
                    self._closer = threading.Thread(
                        target=self._shutdown, args=(timeout, cancel_pending), name=f"{self.name}-closer", daemon=True
                    )
                    self._closer.start()
            finally:
                self._shutdown_lock.release()
        s = self.stats()
        return ShutdownReport(self.backend, s.succeeded, s.failed, s.timed_out, complete=False)

    async def ashutdown(
        self, wait: bool = True, *, timeout: float | None = None, cancel_pending: bool = False
    ) -> ShutdownReport:
        """:meth:`shutdown` for async code: waits without blocking the event loop."""
        return await asyncio.to_thread(self.shutdown, wait, timeout=timeout, cancel_pending=cancel_pending)

    def _close_intake_locked(self) -> None:
        """Stop intake: submit raises PoolClosed from now on."""
        if self._state in (_NEW, _OPEN):
            self._state = _CLOSING
        self._room.notify_all()
        self._wake_room_locked()
        self._check_drained_locked()

    def _cancel_jobs(self, states: tuple[JobStatus, ...], *, record: bool = True, only_waiting: bool = False) -> None:
        """Cancel every live job in one of ``states``; with ``record``, list the ids
        in the shutdown report (running ones as killed). ``only_waiting``: not a job
        sent ahead that its worker began (see ``_cancel_waiting``)."""
        with self._lock:
            victims = [job for job in self._live.values() if job._status in states]
        for job in victims:
            was_running = job._status is RUNNING
            if self._settle_outside(job, CANCELLED, None, only_waiting=only_waiting) and record:
                (self._shutdown_killed if was_running else self._shutdown_cancelled).append(job.job_id)

    def _cancel_everything(self) -> None:
        """The final phase of shutdown: end every job still live, whatever it is doing.
        Repeats because a running attempt may fail into a retry between two looks."""
        with self._lock:
            self._final_phase = True
        while True:
            self._cancel_jobs((QUEUED, RETRYING))
            self._cancel_jobs((RUNNING,))
            with self._lock:
                if not self._live:
                    return

    def _shutdown(self, timeout: float | None, cancel_pending: bool) -> ShutdownReport:
        report = self._shut_down(timeout, cancel_pending)
        # The done-callbacks of the last jobs run before shutdown returns. Waited for
        # outside the shutdown lock: a callback that calls shutdown() gets the report
        # instead of waiting for the lock that this wait holds. At interpreter exit a
        # callback that never returns must not hang the exit: it gets a bounded wait
        # (its thread is a daemon).
        deadline = self._callbacks_deadline
        if deadline is None and _exiting:
            deadline = time.monotonic() + EXIT_CALLBACKS_WAIT
        self._callback_runner.stop(deadline)
        return report

    def _shut_down(self, timeout: float | None, cancel_pending: bool) -> ShutdownReport:
        with self._shutdown_lock:
            self._shutting_down_on = threading.get_ident()
            try:
                return self._shut_down_locked(timeout, cancel_pending)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    # Ctrl-C (or SystemExit) cut this shutdown short: what finishes it
                    # (the exit hook's, say) stops everything at once, or the interrupt
                    # would end in a wait for every job.
                    self._stop_now = True
                raise
            finally:
                self._shutting_down_on = None

    def _shut_down_locked(self, timeout: float | None, cancel_pending: bool) -> ShutdownReport:
        if self._report is not None:
            return self._report
        if self._stop_now:
            timeout, cancel_pending = 0.0, True
        t0 = time.monotonic()
        deadline = None if timeout is None else t0 + timeout
        with self._lock:
            self._close_intake_locked()
            never_started = not self._workers_started
        if never_started:
            self._state = _CLOSED
            self._report = ShutdownReport(self.backend, 0, 0, 0)
            return self._report
        if _race_hook is not None:
            _race_hook("shutdown")
        if cancel_pending:
            self._cancel_jobs((QUEUED, RETRYING), only_waiting=True)
        self._impl.before_drain()
        self._wait_drained(deadline)
        self._cancel_everything()
        # Stopped jobs get a short grace to end (a thread job notices its cancelled
        # context, a killed process is reaped); idle workers leave at once. The
        # timer goes first: no retry may wake a backend that is being torn down.
        grace = None if deadline is None else max(deadline, time.monotonic()) + CANCEL_GRACE
        self._timer.stop(None if grace is None else max(0.0, grace - time.monotonic()))
        abandoned = self._impl.stop(grace)
        self._callbacks_deadline = grace
        with self._lock:
            self._state = _CLOSED
            report = ShutdownReport(
                self.backend,
                self._succeeded,
                self._failed,
                self._timed_out,
                tuple(self._shutdown_cancelled),
                tuple(self._shutdown_killed),
                abandoned,
                time.monotonic() - t0,
            )
        self._report = report
        with _live_lock:
            _live_pools.discard(self)
        return report

    def _wait_drained(self, deadline: float | None) -> None:
        with self._lock:
            while self._queued or self._running or self._retrying:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._drained.wait(remaining)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} {self._state} workers={self.workers} "
            f"queued={self._queued} busy={self._running}>"
        )


def _qualname(fn: Any) -> str:
    fn = getattr(fn, "func", fn)  # functools.partial
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', None) or '?'}.{name}"


_exiting = False  # the interpreter is exiting: no pool starts any more


def live_pools() -> list[Pool]:
    """The pools started and not shut down (for the leak checker)."""
    with _live_lock:
        return list(_live_pools)


def _shutdown_live_pools() -> None:
    # Like concurrent.futures: a program that ends without shutting its pools down
    # still finishes their jobs. Ctrl-C here interrupts the wait; every worker
    # thread is a daemon and every worker process is killed, so exit never hangs.
    # It runs inside threading's own shutdown: an error here must not keep the other
    # pools from being shut down, nor the program's non-daemon threads from being joined.
    global _exiting
    _exiting = True
    live = live_pools()
    for pool in live:  # all stop taking jobs first: one pool's job may not feed another for ever
        try:
            with pool._lock:
                pool._close_reason = pool._close_reason or (
                    f"pool {pool.name} was shut down when the interpreter began to exit, and takes no new jobs"
                )
                pool._close_intake_locked()
        except Exception:  # noqa: BLE001 - reported, and the exit goes on
            _log.exception("poolbench: could not close pool %s at exit", pool.name)
    for pool in live:
        try:
            pool.shutdown(wait=True)
        except Exception:  # noqa: BLE001 - reported, and the exit goes on
            _log.exception("poolbench: shutting pool %s down at exit failed", pool.name)


# As concurrent.futures does: registered with threading, not atexit, so that it runs
# when the main thread ends and before every atexit hook — multiprocessing's among
# them, which would otherwise stop the forkserver and terminate the workers under
# running jobs (atexit runs its hooks last in, first out, and multiprocessing is
# imported after pools, when the first process pool starts).
try:
    threading._register_atexit(_shutdown_live_pools)  # type: ignore[attr-defined]
except RuntimeError:  # imported while the interpreter exits (in an atexit hook)
    _exiting = True


# A forked child (a "fork" worker process, or the user's own os.fork()) inherits copies
# of this process's pools, whose threads did not come along and whose worker processes
# are its siblings: at its exit the hook above must not drain or kill them.
def _forget_parents_pools() -> None:
    global _live_lock
    _live_lock = threading.Lock()  # another thread of the parent may have held it
    _live_pools.clear()


os.register_at_fork(after_in_child=_forget_parents_pools)


def _result_or_cancel(job: Job[T]) -> T:
    """``job.result()``; a wait that ends otherwise (KeyboardInterrupt) cancels it, as
    ``map`` cancels its other jobs in flight. (No local name holds the result in ``map``.)"""
    try:
        return job.result()
    except BaseException:
        job.cancel()
        raise


def create_pool(backend: str = "thread", **options: Any) -> Pool:
    """Make a pool of the named backend; options are keyword-only: ``workers``,
    ``queue_size`` (default 1000), ``overflow`` ("block" or "reject"), ``name``,
    and the backend's own (see its class)."""
    if not isinstance(backend, str):
        raise UnknownBackend(f"backend must be a name (str), got {backend!r}; valid: {registered_backends()}")
    return Pool(backend, **options)
