"""The pool contract, and the job lifecycle that every backend shares.

Data flow (every backend)::

    submit()/asubmit() ──admission──▶ heap of waiting jobs ──_take_locked()──▶ backend workers
         │  (room = queue_size + idle workers;        ▲                       │
         │   block / wait= / reject)                  │ _requeue()            │ _finish_attempt()
         ▼                                            │ (after back-off,      ▼
     QueueFull / PoolClosed                     Timer thread ◀── retry? ── attempt outcome
                                                                            │ no retry
    job.cancel() ── _cancel() ── backend._stop_running()                     ▼
                                                              Future resolved (exactly once)

All counters and job states change under one lock (``Pool._lock``), so ``stats()``
is a consistent snapshot and the conservation law holds at every instant::

    submitted == succeeded + failed + cancelled + timed_out + queued + busy + retrying

A backend supplies only: checking and preparing a callable, starting its workers,
being woken when a job is queued, stopping one running attempt, and stopping its
workers. Everything else (priorities, bounds, retries, cancellation of waiting
jobs, statistics, shutdown, ``map``, the async API) is here, once.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import functools
import heapq
import itertools
import math
import os
import random
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._callbacks import CallbackRunner, on_internal_thread
from ._timer import Timer
from .exceptions import (
    InvalidArgument,
    InvalidCallable,
    JobTimeout,
    PoolClosed,
    PoolError,
    QueueFull,
)

__all__ = ["Job", "Pool", "PoolStats", "Retry", "ShutdownReport"]

# Job states. Strings so that reprs and the HTTP service read well; compared with `is`.
QUEUED = "queued"
RUNNING = "running"
RETRYING = "retrying"  # waiting for its next attempt: holds no worker
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT})
_PREFETCHED = "prefetched"  # internal: how _settle_outside tells a prefetched job's cancel apart

# Outcomes of one attempt, reported by a backend to _finish_attempt().
OK = "ok"
ERROR = "error"
TIMEOUT = "timeout"
CRASH = "crash"

_job_ids = itertools.count(1)
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()

_RESERVOIR = 8192  # latest samples kept for the percentiles in stats()
CANCEL_GRACE = 1.0  # seconds that shutdown(timeout=T) gives stopped jobs to end, after T


# --------------------------------------------------------------------------- options


def _check_number(name: str, value: Any, *, minimum: float, inclusive: bool, none_ok: bool) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}")
    ok = value >= minimum if inclusive else value > minimum
    if not ok or math.isnan(value) or math.isinf(value):
        relation = ">=" if inclusive else ">"
        raise InvalidArgument(f"{name} must be finite and {relation} {minimum}, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Retry:
    """How to retry a failed job: up to ``attempts`` attempts in all (the first
    included), waiting ``backoff * 2**(n-1)`` seconds before attempt ``n+1``, capped
    at ``max_backoff``; with ``jitter`` the wait is drawn uniformly from
    [wait/2, wait] ("equal jitter"), so that retries of many jobs spread out.
    Only exceptions that are instances of ``on`` are retried; a timeout
    (``JobTimeout``) and a crash (``WorkerCrashed``) are exceptions like any other,
    so the default ``on=(Exception,)`` retries them too.
    """

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 2.0
    jitter: bool = True
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        check_int("Retry.attempts", self.attempts, minimum=1)
        _check_number("Retry.backoff", self.backoff, minimum=0, inclusive=True, none_ok=False)
        _check_number("Retry.max_backoff", self.max_backoff, minimum=0, inclusive=True, none_ok=False)
        if self.max_backoff < self.backoff:
            raise InvalidArgument(
                f"Retry.max_backoff ({self.max_backoff!r}) must be >= Retry.backoff ({self.backoff!r})"
            )
        on = self.on if isinstance(self.on, tuple) else (self.on,)
        for cls in on:
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                raise InvalidArgument(f"Retry.on must hold exception classes, got {cls!r}")
        object.__setattr__(self, "on", on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        if self.jitter:
            wait = random.uniform(wait / 2, wait)
        return wait


def _percentiles(samples: Iterable[float]) -> tuple[float | None, float | None, float | None]:
    data = sorted(samples)
    if not data:
        return (None, None, None)
    n = len(data)

    def pick(q: float) -> float:  # nearest-rank: a value that really occurred
        return data[min(n - 1, max(0, math.ceil(q * n) - 1))]

    return (pick(0.50), pick(0.95), pick(0.99))


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A consistent snapshot of a pool, taken under its lock.

    Gauges: ``workers``, ``busy`` (jobs running now), ``queued`` (waiting for a
    worker), ``retrying`` (waiting out a retry back-off), ``abandoned`` (thread
    backend: threads still running a job that was timed out or cancelled).
    Counters since start: ``submitted`` (accepted jobs), the four terminal states,
    ``rejected`` (``QueueFull`` raised; never submitted), ``retried`` (attempts
    scheduled again), ``crashed`` (worker processes that died under a job).
    Percentiles (seconds, ``None`` before any sample) cover the latest 8192
    attempts: queue wait (enqueue to start) and run time (start to end).
    """

    backend: str
    workers: int
    busy: int
    queued: int
    retrying: int
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    timed_out: int
    rejected: int
    retried: int
    crashed: int
    abandoned: int
    queue_wait_p50: float | None
    queue_wait_p95: float | None
    queue_wait_p99: float | None
    run_time_p50: float | None
    run_time_p95: float | None
    run_time_p99: float | None
    uptime: float

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.timed_out

    def conserved(self) -> bool:
        """The conservation law: every accepted job is in exactly one state."""
        return self.submitted == self.finished + self.queued + self.busy + self.retrying


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What ``shutdown()`` did. ``cancelled`` lists the ids of jobs it cancelled
    while they waited (queued or in a retry back-off); ``killed`` those it stopped
    while running, when the deadline passed (process: worker killed; asyncio: task
    cancelled; thread: context cancelled and thread abandoned). ``abandoned_threads``
    counts threads still running user code when it returned (thread backend, jobs
    that ignore their context). ``complete`` is False for a ``wait=False`` report."""

    backend: str
    succeeded: int
    failed: int
    timed_out: int
    cancelled: tuple[int, ...] = field(default=())
    killed: tuple[int, ...] = field(default=())
    abandoned_threads: int = 0
    duration: float = 0.0
    complete: bool = True


# ------------------------------------------------------------------------------ job


class Job(concurrent.futures.Future):
    """A submitted job. It *is* a ``concurrent.futures.Future`` (so ``wait``,
    ``as_completed`` and ``asyncio.wrap_future`` take it) and it is awaitable.

    Unlike a plain ``Future``, ``cancel()`` also stops a running job. The
    underlying ``Future`` stays pending until the job ends, so ``running()`` and
    ``status`` come from the pool, not from the ``Future``.
    """

    # A plain Future builds a threading.Condition, a waiter list and a callback list
    # up front: eight objects for the garbage collector per job, and most jobs never
    # need them (their result is read after they ended, or they are awaited). Here
    # they are made on first use. Until the condition exists, the module lock
    # _LAZY guards the future's state; once it exists (it never goes away), the
    # condition does, exactly as in Future — so every base-class method still works.

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        args: tuple,
        payload: Any,
        priority: int,
        timeout: float | None,
        retry: Retry | None,
        ctxvars: contextvars.Context | None,
    ) -> None:
        # Future.__init__ is replaced by the lazy fields below.
        self._state = _F_PENDING
        self._result = None
        self._exception: BaseException | None = None
        self._cond: threading.Condition | None = None
        self._callbacks: list[Callable[[Job], Any]] | None = None
        self._waiter_list: list[Any] | None = None
        self._aw_loop: asyncio.AbstractEventLoop | None = None  # the first awaiter's loop
        self._aw_future: asyncio.Future | None = None  # ... and the future it sleeps on
        self.job_id: int = next(_job_ids)
        self.fn = fn
        self.args = args
        self.priority = priority
        self.timeout = timeout
        self.retry = retry
        self.attempt = 0  # number of the current or last attempt (1-based)
        self._pool = pool
        self._payload = payload  # what the backend sends to a worker
        self._ctxvars = ctxvars
        self._status = QUEUED
        self._enqueued_at = 0.0
        self._started_at = 0.0
        self.backend_slot: Any = None  # per-backend bookkeeping of the running attempt
        self._prefetched = False  # QUEUED, but in a worker's backlog rather than the heap

    # -- the lazy parts of Future (names used by concurrent.futures itself)

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _LAZY:
                cond = self._cond
                if cond is None:
                    if self._state in _F_DONE:
                        # Ended, and nobody ever waited: its state can no longer change,
                        # so there is nothing to guard, wait for or notify. wait(jobs)
                        # and as_completed(jobs) lock every job's condition and would
                        # otherwise build one per job that already ended.
                        return _ENDED_CONDITION
                    cond = self._cond = _JobCondition()
        return cond

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]  # touched only under the condition
        if self._waiter_list is None:
            if self._cond is None and self._state in _F_DONE:
                return _NO_WAITERS  # ended: no waiter will ever be told anything
            self._waiter_list = []
        return self._waiter_list

    def _invoke_callbacks(self) -> None:
        woken = self._aw_future
        if woken is not None:
            self._aw_future = None
            _wake_awaiter(self._aw_loop, woken, self)
            self._aw_loop = None
        callbacks = self._callbacks
        if not callbacks:
            return
        if on_internal_thread():
            # Settled by the timer or a manager thread, which deliver every job's
            # deadline and result: user code runs on the callback thread instead (see
            # _callbacks); other awaiters are woken here, as the first one was.
            _call_each(self, [cb for cb in callbacks if _is_waker(cb)])
            later = [cb for cb in callbacks if not _is_waker(cb)]
            if later:
                self._pool._callback_runner.run_later(functools.partial(_call_each, self, later))
        else:
            _call_each(self, callbacks)

    @property
    def _done_callbacks(self) -> list[Callable[[Job], Any]] | tuple:  # type: ignore[override]
        return self._callbacks or ()

    def add_done_callback(self, fn: Callable[[Job], Any]) -> None:
        with _LAZY:
            cond = self._cond
            if cond is None and self._keep_callback(fn):
                return
        if cond is not None:
            with cond:
                if self._keep_callback(fn):
                    return
        try:
            fn(self)
        except Exception:  # noqa: BLE001 - logged and lost, as concurrent.futures does
            concurrent.futures._base.LOGGER.exception("exception calling callback for %r", self)

    def _keep_callback(self, fn: Callable[[Job], Any]) -> bool:
        """Keep ``fn`` for the end, unless the future ended already (lock held)."""
        if self._state in _F_DONE:
            return False
        if self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)
        return True

    def set_result(self, result: Any) -> None:
        self._end_future(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._end_future(None, exception)

    def _end_future(self, result: Any, exception: BaseException | None) -> None:
        with _LAZY:
            cond = self._cond
            if cond is None:
                if self._state in _F_DONE:
                    raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
                self._result = result
                self._exception = exception
                self._state = _F_FINISHED
        if cond is None:  # nobody could be waiting on a condition that does not exist
            self._invoke_callbacks()
        elif exception is None:
            super().set_result(result)
        else:
            super().set_exception(exception)

    # -- reads of an ended future need no lock: its fields never change again

    def done(self) -> bool:
        return self._state in _F_DONE

    def cancelled(self) -> bool:
        return self._state in _F_CANCELLED

    def result(self, timeout: float | None = None) -> Any:
        if self._state is _F_FINISHED and self._exception is None:
            return self._result
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state is _F_FINISHED:
            return self._exception
        return super().exception(timeout)

    # -- the pool's view

    @property
    def status(self) -> str:
        """queued, running, retrying, succeeded, failed, cancelled or timed_out."""
        return self._status

    @property
    def enqueued_at(self) -> float:
        """``time.monotonic()`` when the job (or its latest retry) entered the queue."""
        return self._enqueued_at

    @property
    def started_at(self) -> float:
        """``time.monotonic()`` when a worker took its latest attempt (0.0 if none yet)."""
        return self._started_at

    def cancel(self) -> bool:
        """Cancel the job, waiting or running; return True if it took effect."""
        return self._pool._cancel(self)

    def running(self) -> bool:
        return self._status is RUNNING

    def __await__(self):
        # Not asyncio.wrap_future: that costs a thread-safe call (a self-pipe write)
        # per job even when the job ends on the awaiting loop's own thread, which is
        # where the asyncio backend ends its jobs. Cancelling the awaiting task
        # cancels the job, as with wrap_future.
        if self._state not in _F_DONE:
            loop = asyncio.get_running_loop()
            woken = loop.create_future()
            with _LAZY:
                # The first awaiter rides in two fields, not in a callback: the
                # common case, with no partial and no callback list per job.
                first = self._cond is None and self._aw_future is None and self._state not in _F_DONE
                if first:
                    self._aw_loop, self._aw_future = loop, woken
            if not first:
                self.add_done_callback(functools.partial(_wake_awaiter, loop, woken))
            try:
                yield from woken
            except asyncio.CancelledError:
                self.cancel()
                raise
        if self._state is _F_FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result
        raise asyncio.CancelledError()

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self._status} attempt={self.attempt} on {self._pool.backend}>"


_LAZY = threading.Lock()  # guards a Job's future state until its condition exists


class _JobCondition:
    """What concurrent.futures uses of a job's ``threading.Condition``, for a tenth
    of its construction cost: ``wait(jobs)`` makes one for every job still
    pending, and ``Condition()`` builds a dozen objects (bound methods, a deque).
    The waiting protocol is Condition's own: a lock per sleeper, released by
    ``notify_all`` under the mutex."""

    __slots__ = ("_mutex", "_sleepers")

    def __init__(self) -> None:
        self._mutex = threading.RLock()
        self._sleepers: list[Any] | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._mutex.acquire(blocking, timeout)

    def release(self) -> None:
        self._mutex.release()

    def __enter__(self) -> bool:
        return self._mutex.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self._mutex.release()

    def wait(self, timeout: float | None = None) -> bool:
        sleeper = _allocate_lock()
        sleeper.acquire()
        if self._sleepers is None:
            self._sleepers = []
        self._sleepers.append(sleeper)
        saved = self._mutex._release_save()  # type: ignore[attr-defined]
        woken = False
        try:
            if timeout is None:
                woken = sleeper.acquire()
            elif timeout > 0:
                woken = sleeper.acquire(True, timeout)
            else:
                woken = sleeper.acquire(False)
            return woken
        finally:
            self._mutex._acquire_restore(saved)  # type: ignore[attr-defined]
            if not woken and self._sleepers is not None:
                try:
                    self._sleepers.remove(sleeper)
                except ValueError:
                    pass

    def notify(self, n: int = 1) -> None:
        sleepers = self._sleepers
        while sleepers and n > 0:
            sleepers.pop(0).release()
            n -= 1

    def notify_all(self) -> None:
        sleepers, self._sleepers = self._sleepers, None
        for sleeper in sleepers or ():
            sleeper.release()


_allocate_lock = threading.Lock  # the C lock type: a sleeper is one such lock


class _EndedCondition:
    """The condition of a job that ended before anyone needed one: a no-op, since
    an ended future's fields never change again (no lock, so no lock order)."""

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        pass

    __enter__ = acquire

    def __exit__(self, *exc_info: Any) -> None:
        pass

    def wait(self, timeout: float | None = None) -> bool:
        return True  # callers re-check the (final) state

    def notify(self, n: int = 1) -> None:
        pass

    def notify_all(self) -> None:
        pass


_ENDED_CONDITION = _EndedCondition()


class _NoWaiters(tuple):
    """The waiter list of an ended job: wait(jobs) adds its waiter to every job and
    removes it afterwards; an ended job has nothing to tell it."""

    __slots__ = ()

    def append(self, waiter: Any) -> None:
        pass

    def remove(self, waiter: Any) -> None:
        pass


_NO_WAITERS = _NoWaiters()
_F_PENDING = concurrent.futures._base.PENDING
_F_FINISHED = concurrent.futures._base.FINISHED
_F_CANCELLED = frozenset({concurrent.futures._base.CANCELLED, concurrent.futures._base.CANCELLED_AND_NOTIFIED})
_F_DONE = _F_CANCELLED | {_F_FINISHED}


def _call_each(job: Job, callbacks: list[Callable[[Job], Any]]) -> None:
    for callback in callbacks:
        try:
            callback(job)
        except Exception:  # noqa: BLE001 - logged and lost, as concurrent.futures does
            concurrent.futures._base.LOGGER.exception("exception calling callback for %r", job)


def _is_waker(callback: Callable[[Job], Any]) -> bool:
    return type(callback) is functools.partial and callback.func is _wake_awaiter


def _wake_awaiter(loop: asyncio.AbstractEventLoop, woken: asyncio.Future, _job: Job) -> None:
    if asyncio._get_running_loop() is loop:  # ended on the awaiting loop's thread: wake it directly
        if not woken.done():
            woken.set_result(None)
        return
    try:
        loop.call_soon_threadsafe(_resolve_quietly, woken)
    except RuntimeError:  # that loop is closed: nobody is awaiting any more
        pass


# ----------------------------------------------------------------------------- pool


_NEW, _OPEN, _CLOSING, _CLOSED = "new", "open", "closing", "closed"
OVERFLOW_POLICIES = ("block", "reject")


class Pool(ABC):
    """A pool of workers with a bounded priority queue. Make one with
    ``pools.create_pool(backend, ...)``. Thread-safe: any thread may submit."""

    backend: ClassVar[str]
    #: "callables" (plain functions) or "coroutines" (coroutine functions)
    runs: ClassVar[str] = "callables"
    #: the backend can stop a running job for real (kill, task cancel)
    stops_running_jobs: ClassVar[bool] = True
    #: a crashing job kills only its worker, not the program
    survives_crashes: ClassVar[bool] = False
    #: the submitter's contextvars are visible in the job
    carries_contextvars: ClassVar[bool] = True

    def __init__(
        self,
        *,
        workers: int | None = None,
        queue_size: int = 1000,
        overflow: str = "block",
        name: str | None = None,
    ) -> None:
        self.workers = check_int("workers", self.default_workers() if workers is None else workers, minimum=1)
        self.queue_size = check_int("queue_size", queue_size, minimum=0)
        if overflow not in OVERFLOW_POLICIES:
            raise InvalidArgument(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        self.overflow = overflow
        self.name = name or f"poolbench-{self.backend}-{id(self):x}"

        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # blocked submitters
        self._drained = threading.Condition(self._lock)  # shutdown() waiting for the last job
        self._async_room: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._heap: list[tuple[int, int, Job]] = []
        self._seq = itertools.count()
        self._live: dict[int, Job] = {}  # every accepted job not yet terminal
        self._state = _NEW
        self._queued = self._running = self._retrying = self._dead_in_heap = 0
        self._submitted = self._succeeded = self._failed = self._cancelled = 0
        self._timed_out = self._rejected = self._retried = self._crashed = 0
        self._abandoned = 0
        self._waits: collections.deque[float] = collections.deque(maxlen=_RESERVOIR)
        self._runs: collections.deque[float] = collections.deque(maxlen=_RESERVOIR)
        self._started_at = time.monotonic()
        self._timer = Timer(f"{self.name}-timer")
        self._callback_runner = CallbackRunner(f"{self.name}-callbacks")
        self._callbacks_deadline: float | None = None  # set by shutdown: how long they may still take
        self._shutdown_lock = threading.Lock()
        self._report: ShutdownReport | None = None
        self._closer: threading.Thread | None = None
        self._workers_started = False
        self._close_reason: str | None = None  # why intake closed, when not by shutdown()
        self._final_phase = False  # shutdown's deadline passed: no more retries
        self._shutdown_cancelled: list[int] = []  # ids of jobs that shutdown cancelled
        self._shutdown_killed: list[int] = []

    # ---------------------------------------------------------------- backend hooks

    @classmethod
    def default_workers(cls) -> int:
        return os.cpu_count() or 1

    @abstractmethod
    def _prepare(self, fn: Callable[..., Any], args: tuple) -> Any:
        """Check that ``fn`` can run here (raise InvalidCallable) and return the
        payload that the backend will hand to a worker."""

    @abstractmethod
    def _start_workers(self) -> None:
        """Start the workers. Called once, by start()."""

    @abstractmethod
    def _on_enqueued_locked(self) -> None:
        """A job was pushed on the heap (lock held): wake a worker."""

    def _preempted_locked(self, job: Job) -> None:
        """Hook (lock held): a running attempt of ``job`` was just settled from
        outside its worker (cancelled, or timed out by the pool's own clock)."""

    @abstractmethod
    def _stop_running(self, job: Job, attempt: int) -> None:
        """Attempt ``attempt`` of ``job`` was cancelled or timed out from outside
        (lock not held): stop the work (kill, cancel the task, abandon the thread).
        Also called for a cancelled job that a backend had prefetched (it is still
        ``job.attempt``, not begun): the backend makes sure that it never starts."""

    @abstractmethod
    def _stop_workers(self, deadline: float | None) -> int:
        """No job is queued or running: stop and join every worker by ``deadline``;
        return the number of threads still running user code (abandoned)."""

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
            if _exiting:
                # Its workers would never run the job: the exit hook that finishes
                # the pools' jobs has run already (concurrent.futures refuses too).
                with self._lock:
                    self._state = _CLOSED
                raise PoolClosed(
                    f"pool {self.name} cannot start after interpreter shutdown began: submit "
                    "before the main thread ends, or shut the pool down in your own exit hook"
                )
            self._started_at = time.monotonic()
            try:
                self._start_workers()
            except BaseException:
                with self._lock:
                    self._state = _CLOSED
                raise
            self._workers_started = True
            with self._lock:
                # Open only now: a submit racing this start waits in start() above
                # instead of queueing a job that no worker exists for yet.
                self._state = _OPEN
        _live_pools.add(self)
        return self

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.shutdown(wait=True)
        elif issubclass(exc_type, Exception):
            self.shutdown(wait=True, cancel_pending=True)
        else:  # KeyboardInterrupt, SystemExit: leave now, stop everything
            self.shutdown(wait=True, timeout=0, cancel_pending=True)

    async def __aenter__(self) -> Pool:
        return self.start()

    async def __aexit__(self, exc_type, exc, tb) -> None:
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
            and (timeout is None or (type(timeout) is float and 0.0 < timeout < math.inf))
        ):
            return  # the common cases, checked without a call
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidArgument(f"priority must be an int (higher runs first), got {priority!r}")
        _check_number("timeout", timeout, minimum=0, inclusive=False, none_ok=True)
        _check_number("wait", wait, minimum=0, inclusive=True, none_ok=True)
        if retry is not None and not isinstance(retry, Retry):
            raise InvalidArgument(f"retry must be a pools.Retry, e.g. Retry(attempts=3), or None; got {retry!r}")

    def _make_job(self, fn, args, priority, timeout, retry, wait) -> Job:
        self._check_options(priority, timeout, retry, wait)
        payload = self._prepare(fn, args)
        ctxvars = contextvars.copy_context() if self.carries_contextvars else None
        return Job(self, fn, args, payload, priority, timeout, retry, ctxvars)

    def _has_room_locked(self) -> bool:
        # Waiting jobs are bounded by queue_size plus the workers idle right now, so
        # queue_size=0 is an unbuffered hand-off: accepted only when a worker can take it.
        return self._queued < self.queue_size + (self.workers - self._running)

    def _push_locked(self, job: Job) -> None:
        job._enqueued_at = time.monotonic()
        heapq.heappush(self._heap, (-job.priority, next(self._seq), job))
        self._queued += 1
        self._on_enqueued_locked()

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(self._close_reason or f"pool {self.name} is shut down and takes no new jobs")

    def _reject_locked(self, job: Job, why: str) -> QueueFull:
        self._rejected += 1
        return QueueFull(
            f"queue full ({self._queued} waiting, queue_size={self.queue_size}, "
            f"{self._running}/{self.workers} workers busy): {why}",
            job_id=job.job_id,
        )

    def _accept_locked(self, job: Job) -> None:
        self._submitted += 1
        self._live[job.job_id] = job
        self._push_locked(job)

    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job:
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
        with self._lock:
            if self._state is not _OPEN:
                raise self._closed_error()
            self._check_accept_locked()
            if not self._has_room_locked():
                self._wait_for_room_locked(job, wait)
            self._accept_locked(job)
        return job

    def _wait_for_room_locked(self, job: Job, wait: float | None) -> None:
        if self.overflow == "reject":
            raise self._reject_locked(job, 'overflow="reject" drops jobs that find no room')
        self._check_blocking_allowed()
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

    def _check_accept_locked(self) -> None:
        """Hook: raise if the backend can no longer run jobs (its loop has ended)."""

    def _before_drain(self) -> None:
        """Hook: called by shutdown before it waits for the jobs to finish."""

    def _check_blocking_allowed(self) -> None:
        """Hook: a backend whose workers share the caller's thread refuses to block it."""

    async def asubmit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        wait: float | None = None,
    ) -> Job:
        """Like :meth:`submit`, for async code: waits for room without blocking
        the event loop. ``await`` the returned job for its result."""
        job = self._make_job(fn, args, priority, timeout, retry, wait)
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        if self._state is _NEW:
            self.start()
        while True:
            with self._lock:
                if self._state is not _OPEN:
                    raise self._closed_error()
                self._check_accept_locked()
                if self._has_room_locked():
                    self._accept_locked(job)
                    return job
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

    def _wake_room_locked(self) -> None:
        if self._room._waiters:  # type: ignore[attr-defined]  # skip notify()'s ownership check when idle
            self._room.notify()
        if self._async_room:
            # Wake every async waiter: each re-checks, so a waiter that gave up
            # cannot swallow the wake-up that another one needed.
            waiters, self._async_room = self._async_room, []
            for loop, fut in waiters:
                try:
                    loop.call_soon_threadsafe(_resolve_quietly, fut)
                except RuntimeError:  # loop closed: its waiter is gone
                    pass

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        priority: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Iterator[Any]:
        """Lazily run ``fn`` over ``zip(*iterables)`` and yield results in order.

        At most ``workers + queue_size`` jobs are in flight (at least one), so an
        endless iterable is fine. If the consumer stops early or a job raises, the
        jobs still in flight are cancelled.
        """
        self._check_options(priority, timeout, retry, None)
        self._prepare_check(fn)
        window = max(1, self.workers + self.queue_size)
        return self._map(fn, zip(*iterables, strict=False), window, priority, timeout, retry)

    def _prepare_check(self, fn: Callable[..., Any]) -> None:
        self._prepare(fn, ())

    def _map(self, fn, argsets, window, priority, timeout, retry) -> Iterator[Any]:
        pending: collections.deque[Job] = collections.deque()
        try:
            for args in argsets:
                if len(pending) >= window:
                    yield pending.popleft().result()
                pending.append(self.submit(fn, *args, priority=priority, timeout=timeout, retry=retry))
            while pending:
                yield pending.popleft().result()
        finally:
            for job in pending:
                job.cancel()

    # ---------------------------------------------------------------- worker side

    def _take_locked(self) -> Job | None:
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

    def _mark_running_locked(self, job: Job, now: float) -> None:
        job._status = RUNNING
        job.attempt += 1
        self._queued -= 1
        self._running += 1
        self._waits.append(now - job._enqueued_at)
        job._started_at = now

    # A backend whose workers sit behind a pipe may hand a worker its next jobs
    # before the current one ends ("prefetch"), so that the worker never idles for
    # a round trip. A prefetched job left the heap but is still QUEUED (counted as
    # waiting, cancellable as waiting: _settle_outside calls _stop_running so the
    # backend makes sure it never starts) until the backend reports it started.

    def _take_prefetch_locked(self, fits: Callable[[Job], bool]) -> Job | None:
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

    def _start_prefetched_locked(self, job: Job, started_at: float) -> bool:
        """A prefetched job began to run at ``started_at`` (a ``time.monotonic()``
        value): mark it running. False if it was cancelled meanwhile."""
        if job._status is not QUEUED or not job._prefetched:
            return False
        job._prefetched = False
        self._mark_running_locked(job, started_at)
        return True

    def _unstart_locked(self, job: Job, attempt: int) -> None:
        """Attempt ``attempt`` of ``job`` was marked running but its worker died
        before beginning it: the job waits again, and the attempt is not used."""
        if job._status is not RUNNING or job.attempt != attempt:
            return
        job._status = QUEUED
        job.attempt -= 1
        self._running -= 1
        self._queued += 1
        heapq.heappush(self._heap, (-job.priority, next(self._seq), job))
        self._on_enqueued_locked()

    def _unprefetch_locked(self, job: Job) -> None:
        """A prefetched job will not run where it was sent (its worker died or was
        replaced): back on the heap, still counted as waiting."""
        if job._status is QUEUED and job._prefetched:
            job._prefetched = False
            heapq.heappush(self._heap, (-job.priority, next(self._seq), job))
            self._on_enqueued_locked()

    def _finish_attempt(
        self, job: Job, attempt: int, outcome: str, value: Any = None, *, preempted: bool = False
    ) -> bool:
        """A backend reports how attempt ``attempt`` of ``job`` ended: ``OK`` with
        its value, or ``ERROR``/``TIMEOUT``/``CRASH`` with the exception. Returns
        False if the attempt had already been settled (cancelled, timed out): its
        outcome is then dropped."""
        with self._lock:
            ended = self._end_attempt_locked(job, attempt, outcome, value, preempted)
        if ended is None:
            return False
        self._settle_ended(job, *ended)
        return True

    def _finish_and_take(self, job: Job, attempt: int, outcome: str, value: Any) -> tuple[bool, Job | None]:
        """``_finish_attempt`` and ``_take_locked`` in one round of the lock, for a
        worker that goes straight on to its next job: under load this halves the
        worker's trips through the lock that every submitter needs too. Returns
        (whether the outcome counted, the next job or None)."""
        with self._lock:
            ended = self._end_attempt_locked(job, attempt, outcome, value, False)
            nxt = self._take_locked() if ended is not None else None
        if ended is None:
            return False, None
        self._settle_ended(job, *ended)
        return True, nxt

    def _end_attempt_locked(
        self, job: Job, attempt: int, outcome: str, value: Any, preempted: bool
    ) -> tuple[str, Any, float | None] | None:
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
            self._preempted_locked(job)
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
    def _release_locked(job: Job, *, keep_slot: bool) -> None:
        """The job ended for good: let go of the user's callable, arguments and
        contextvars (as a ``concurrent.futures`` future holds no reference to its
        call: a pool must not extend the life of the user's objects past their job),
        and of what only a running attempt needs: the caller may keep many jobs for
        long, and the garbage collector would walk them again and again. A backend
        still stopping the attempt (``keep_slot``) reads its ``backend_slot`` after
        this; a worker that took the job reads ``fn`` and ``args`` before it
        checks that the job is still running (see the thread backend)."""
        job.fn = job.args = job._ctxvars = None
        if not keep_slot:
            job._payload = job.backend_slot = None

    def _settle_ended(self, job: Job, outcome: str, value: Any, delay: float | None) -> None:
        """The other half (lock not held): resolve the future, or arm the retry."""
        if delay is not None:
            if not self._timer.call_later(delay, self._requeue, job):
                job.cancel()  # shutdown stopped the timer meanwhile: no retry will come
        elif outcome is OK:
            job.set_result(value)
        else:
            _tag(value, job.job_id)
            job.set_exception(value)

    def _settle_timeout(self, job: Job, attempt: int, *, preempted: bool) -> bool:
        """The deadline of a running attempt passed: fail or retry it with JobTimeout.
        ``preempted``: settled by the pool's clock while the work may still run."""
        return self._finish_attempt(job, attempt, TIMEOUT, self._timeout_error(job, attempt), preempted=preempted)

    @staticmethod
    def _timeout_error(job: Job, attempt: int) -> JobTimeout:
        return JobTimeout(
            f"job {job.job_id} (attempt {attempt}) ran past its timeout of {job.timeout}s",
            job_id=job.job_id,
        )

    def _requeue(self, job: Job) -> None:
        with self._lock:
            if job._status is not RETRYING:
                return  # cancelled during the back-off
            self._retrying -= 1
            job._status = QUEUED
            self._push_locked(job)

    def _check_drained_locked(self) -> None:
        if self._state is not _OPEN and not (self._queued or self._running or self._retrying):
            self._drained.notify_all()

    def _cancel(self, job: Job) -> bool:
        return self._settle_outside(job, CANCELLED, None)

    def _settle_outside(self, job: Job, final: str, exc: BaseException | None) -> bool:
        """End ``job`` in state ``final`` whatever it is doing (cancel, pool broken)."""
        with self._lock:
            status = job._status
            if status is QUEUED:
                self._queued -= 1
                if job._prefetched:
                    job._prefetched = False
                    status = _PREFETCHED  # the backend must see that it never starts
                else:
                    self._dead_in_heap += 1
                    if self._dead_in_heap > 1024 and self._dead_in_heap * 2 > len(self._heap):
                        self._compact_heap_locked()
            elif status is RETRYING:
                self._retrying -= 1
            elif status is RUNNING:
                self._running -= 1
                self._runs.append(time.monotonic() - job._started_at)
                self._preempted_locked(job)
            else:
                return False
            job._status = final
            if final is CANCELLED:
                self._cancelled += 1
            else:
                self._failed += 1
            del self._live[job.job_id]
            self._release_locked(job, keep_slot=True)
            attempt = job.attempt
            self._wake_room_locked()
            self._check_drained_locked()
        if status is RUNNING or status is _PREFETCHED:
            self._stop_running(job, attempt)
        if exc is None:
            concurrent.futures.Future.cancel(job)
            concurrent.futures.Future.set_running_or_notify_cancel(job)
        else:
            _tag(exc, job.job_id)
            job.set_exception(exc)
        return True

    def _break(self, cause: BaseException) -> None:
        """The backend cannot go on: close intake and fail every unfinished job."""
        from .exceptions import PoolBroken

        with self._lock:
            self._close_intake_locked()
            victims = list(self._live.values())
        for job in victims:
            err = PoolBroken(f"pool {self.name} broke and cannot run job {job.job_id}: {cause!r}", job_id=job.job_id)
            err.__cause__ = cause
            self._settle_outside(job, FAILED, err)

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
        w50, w95, w99 = _percentiles(waits)
        r50, r95, r99 = _percentiles(runs)
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
        )

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
        """
        _check_number("timeout", timeout, minimum=0, inclusive=True, none_ok=True)
        self._check_blocking_shutdown(wait)
        if wait:
            return self._shutdown(timeout, cancel_pending)
        with self._lock:
            self._close_intake_locked()
        if cancel_pending:
            self._cancel_jobs((QUEUED, RETRYING))
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

    def _check_blocking_shutdown(self, wait: bool) -> None:
        """Hook: the asyncio backend refuses a blocking shutdown on its own loop."""

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

    def _cancel_jobs(self, states: tuple[str, ...], *, record: bool = True) -> None:
        """Cancel every live job in one of ``states``; with ``record``, list the ids
        in the shutdown report (running ones as killed)."""
        with self._lock:
            victims = [job for job in self._live.values() if job._status in states]
        for job in victims:
            was_running = job._status is RUNNING
            if job.cancel() and record:
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
        # instead of waiting for the lock that this wait holds.
        self._callback_runner.stop(self._callbacks_deadline)
        return report

    def _shut_down(self, timeout: float | None, cancel_pending: bool) -> ShutdownReport:
        with self._shutdown_lock:
            if self._report is not None:
                return self._report
            t0 = time.monotonic()
            deadline = None if timeout is None else t0 + timeout
            with self._lock:
                self._close_intake_locked()
                never_started = not self._workers_started
            if never_started:
                self._state = _CLOSED
                self._report = ShutdownReport(self.backend, 0, 0, 0)
                return self._report
            if cancel_pending:
                self._cancel_jobs((QUEUED, RETRYING))
            self._before_drain()
            self._wait_drained(deadline)
            self._cancel_everything()
            # Stopped jobs get a short grace to end (a thread job notices its cancelled
            # context, a killed process is reaped); idle workers leave at once. The
            # timer goes first: no retry may wake a backend that is being torn down.
            grace = None if deadline is None else max(deadline, time.monotonic()) + CANCEL_GRACE
            self._timer.stop(None if grace is None else max(0.0, grace - time.monotonic()))
            abandoned = self._stop_workers(grace)
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


def is_coroutine_function(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    if code is not None and type(fn) is _FunctionType:  # the common case, without inspect's unwrapping
        return bool(code.co_flags & _CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


_FunctionType = type(is_coroutine_function)
_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE


def check_plain_callable(backend: str, fn: Any) -> None:
    """The thread and process backends run plain callables."""
    if not callable(fn):
        raise InvalidCallable(f"fn must be callable, got {fn!r}")
    if is_coroutine_function(fn):
        raise InvalidCallable(
            f"the {backend!r} backend runs plain callables, but {fn!r} is a coroutine function: "
            f'use create_pool("asyncio"), or submit a plain function that calls asyncio.run()'
        )


def _resolve_quietly(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _tag(exc: BaseException, job_id: int) -> None:
    """Put the job id on the job's own exception (and in its notes), best effort."""
    if isinstance(exc, PoolError) and exc.job_id is not None:
        return
    try:
        exc.job_id = job_id  # type: ignore[attr-defined]
    except AttributeError:  # __slots__ or a read-only builtin
        pass
    note = f"(raised by poolbench job {job_id})"
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


_exiting = False  # the interpreter is exiting: no pool starts any more


def _shutdown_live_pools() -> None:
    # Like concurrent.futures: a program that ends without shutting its pools down
    # still finishes their jobs. Ctrl-C here interrupts the wait; every worker
    # thread is a daemon and every worker process is killed, so exit never hangs.
    global _exiting
    _exiting = True
    live = list(_live_pools)
    for pool in live:  # all stop taking jobs first: one pool's job may not feed another for ever
        with pool._lock:
            pool._close_reason = pool._close_reason or (
                f"pool {pool.name} was shut down when the interpreter began to exit, and takes no new jobs"
            )
            pool._close_intake_locked()
    for pool in live:
        pool.shutdown(wait=True)


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
os.register_at_fork(after_in_child=_live_pools.clear)
