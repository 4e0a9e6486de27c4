"""The backend seam: what a pool asks of a backend (``Backend``), and how a backend
drives its pool's jobs (``Dispatcher``). Both are public in ``pools.lowlevel``.

The pool (``pools.Pool``) owns the queue, every job's state, retries, deadlines'
bookkeeping, statistics and shutdown, under one lock. A backend owns its workers,
and reaches the jobs only through the dispatcher it is given::

    Pool ──prepare / start / wake_locked / stop_attempt / stop──▶ Backend
      ▲                                                             │
      └──take / finish / finish_and_take / prefetch / started /  ◀──┘
         unstart / give_back / timed_out / broken   (the Dispatcher)

Every call named ``*_locked`` is made (or must be made) with ``dispatcher.lock``
held; the others without it.
"""

from __future__ import annotations

import logging
import os
import threading
import types
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from ._timer import Timer
from ._types import Capabilities, JobStatus, Outcome, WorkerOptions
from .exceptions import InvalidCallable

if TYPE_CHECKING:
    import asyncio

    from ._core import Pool
    from ._job import Job
    from ._types import Ended
    from .exceptions import JobTimeout

__all__ = ["Backend", "Dispatcher", "check_plain_callable", "is_coroutine_function"]

_RUNNING = JobStatus.RUNNING
_log = logging.getLogger("pools")


class Backend(ABC):
    """How a pool's jobs run. Subclass it, give it a ``name`` and ``capabilities``,
    register it (``pools.register_backend("mine", MyBackend)``), and check it with the
    conformance suite (``pools.testing.conformance.PoolConformance``).

    The constructor takes the dispatcher, the pool's ``workers`` option as the
    user gave it (``None`` for the default, ``default_workers()``), and the
    backend's own keyword-only options, which it checks (``InvalidArgument``).
    """

    #: the backend's name, as registered
    name: ClassVar[str] = ""
    #: what the backend can do; a backend that learns more once started (the Dask
    #: backend learns its cluster) sets an updated value on the instance
    capabilities: Capabilities
    #: the event loop the backend ends its jobs on, if it has one (set once started):
    #: a job submitted from that loop's thread becomes an asyncio future of it
    #: (``asyncio.isfuture``), whose done-callbacks run on that loop
    home_loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, dispatcher: Dispatcher, *, workers: int | None = None) -> None:
        self.dispatcher = dispatcher

    @classmethod
    def default_workers(cls) -> int:
        """Workers when the pool's ``workers`` option is not given."""
        return os.cpu_count() or 1

    @abstractmethod
    def prepare(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """Check that ``fn(*args)`` can run here (raise ``InvalidCallable`` naming
        why) and return the job's ``payload``: what a worker needs (pickled bytes,
        say; None if nothing). Called in the submitter's thread."""

    @abstractmethod
    def start(self) -> None:
        """Start the workers. Called once, by ``Pool.start()``; raising fails it."""

    @abstractmethod
    def wake_locked(self) -> None:
        """A job was queued (the lock is held): make sure a worker will take it.
        Must not block: only note it, or notify."""

    @abstractmethod
    def stop_attempt(self, job: Job[Any], attempt: int) -> None:
        """Attempt ``attempt`` of ``job`` was settled from outside its worker (cancelled,
        or timed out by the pool's clock): stop the work (kill, cancel the task, or
        cancel its context and abandon the thread). Also called for a cancelled job
        that was prefetched (``job.prefetched`` was true; ``attempt`` is the one it
        would have had): make sure it never begins. The lock is not held."""

    @abstractmethod
    def stop(self, deadline: float | None) -> int:
        """Shutdown: no job is queued or running any more. Stop and join every worker by
        ``deadline`` (a ``time.monotonic()`` value; None: as long as it takes) and
        return how many threads are still running user code (abandoned)."""

    # Optional hooks.

    def preempted_locked(self, job: Job[Any]) -> None:
        """A running attempt of ``job`` was just settled from outside (the lock is
        held), before ``stop_attempt``: count abandoned work, start a replacement."""

    def claim_prefetched_locked(self, job: Job[Any]) -> bool:
        """A waiting job that was sent ahead to a worker (``job.prefetched``) is about
        to be cancelled as one not begun (``concurrent.futures``' cancel; the lock is
        held). A worker may begin a job sent ahead before the backend hears of it:
        return False if it has begun (the cancel is then refused, as for a running
        job), else make sure it never begins and return True. The default, for a
        backend that cannot tell: True (``stop_attempt`` stops it if it began)."""
        return True

    def check_open_locked(self) -> None:
        """Raise ``PoolClosed`` if the backend can no longer run jobs (the lock is
        held; called on every submit, so it must be cheap)."""

    def before_drain(self) -> None:
        """Shutdown is about to wait for the jobs to finish."""

    def after_start(self) -> None:
        """The pool is open (``start`` returned and submits are accepted): report
        what ``start`` learnt that breaks the pool (``dispatcher.initializer_failed``)."""

    def resize_locked(self, workers: int) -> None:
        """The pool's size changed to ``workers`` (``dispatcher.workers`` already says
        so; the lock is held; only if ``"resize"`` is in ``capabilities.lifecycle``):
        start workers, or let the extra ones exit once their job ends. Must not block."""

    def alive_locked(self) -> int:
        """Workers alive now (``stats().alive``; the lock is held)."""
        return self.dispatcher.workers

    def refuse_blocking(self, call: Literal["submit", "shutdown"]) -> None:
        """Raise ``PoolError`` with the fix if blocking the calling thread in ``call``
        (``submit`` on a full queue, ``shutdown(wait=True)``) would stall the
        workers themselves (the calling thread runs the asyncio backend's loop)."""


class Finish(Protocol):
    """The signature of ``Dispatcher.finish`` (the pool's own method, bound)."""

    def __call__(
        self, job: Job[Any], attempt: int, outcome: Outcome, value: Any = None, *, preempted: bool = False
    ) -> bool: ...


class TimedOut(Protocol):
    """The signature of ``Dispatcher.timed_out``."""

    def __call__(self, job: Job[Any], attempt: int, *, preempted: bool) -> bool: ...


class Broken(Protocol):
    """The signature of ``Dispatcher.broken``."""

    def __call__(self, cause: BaseException, reason: str | None = None) -> None: ...


class Dispatcher:
    """How a backend drives the jobs of its pool: the one interface between them.

    Its operations are the pool's own methods, bound once when the pool is made (no
    extra call per job): replacing a pool method later does not change them.

    A job a backend takes is running (``take_locked``); it reports how each attempt
    ended (``finish``), and the pool settles it: its future, a retry, the counters.
    A backend whose workers sit behind a pipe or a scheduler may send a waiting
    job ahead (``prefetch_locked``): it stays *queued* — counted as waiting,
    cancellable as waiting, its clock not started — until the backend says it began
    (``started_locked``), or gives it back (``give_back_locked``).
    """

    __slots__ = (
        "_pool",
        "broken",
        "close",
        "end_locked",
        "finish",
        "finish_and_take",
        "give_back_locked",
        "lock",
        "name",
        "options",
        "prefetch_locked",
        "settle",
        "started_locked",
        "take_locked",
        "timed_out",
        "timeout_error",
        "timer",
        "unstart_locked",
    )

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        #: the pool's lock: every ``*_locked`` call is made with it held
        self.lock: threading.Lock = pool._lock
        #: the pool's timer thread (retry back-offs, deadlines): ``DeadlineWatch(dispatcher.timer, ...)``
        self.timer: Timer = pool._timer
        #: the pool's name, for naming threads and processes
        self.name: str = pool.name
        #: the pool's worker lifecycle options (initializer, recycling, idle expiry)
        self.options: WorkerOptions = pool.options
        # The operations are the pool's own bound methods: no extra call per job.
        #: ``take_locked() -> Job | None``: the most urgent waiting job, now running
        #: (its ``attempt`` counted, its clock started), or None (none waits, or every
        #: worker is busy).
        self.take_locked: Callable[[], Job[Any] | None] = pool._take_locked
        #: ``finish(job, attempt, outcome, value) -> bool``: attempt ``attempt`` ended
        #: (``Outcome.OK`` and its value, or ERROR / TIMEOUT / CRASH and the exception).
        #: False if it had been settled already (cancelled, timed out): dropped.
        self.finish: Finish = pool._finish_attempt
        #: ``finish_and_take(job, attempt, outcome, value) -> (counted, next job or None)``:
        #: both in one round of the lock, for a worker that goes straight on.
        self.finish_and_take: Callable[[Job[Any], int, Outcome, Any], tuple[bool, Job[Any] | None]] = (
            pool._finish_and_take
        )
        #: ``end_locked(job, attempt, outcome, value) -> Ended | None`` then, with the lock
        #: released, ``settle(job, ended)``: ``finish`` in two halves, to end several
        #: attempts (and update the backend's own records) in one round of the lock.
        self.end_locked: Callable[[Job[Any], int, Outcome, Any], Ended | None] = pool._end_locked
        self.settle: Callable[[Job[Any], Ended], None] = pool._settle_ended
        #: ``timed_out(job, attempt, preempted=...) -> bool``: the attempt ran past its
        #: deadline: it fails, or is retried, with JobTimeout. ``preempted``: the backend's
        #: clock says so while the work may still run (``preempted_locked`` is called;
        #: the backend then stops the work). False if it had been settled already.
        self.timed_out: TimedOut = pool._settle_timeout
        #: ``timeout_error(job, attempt) -> JobTimeout``: the error of an attempt that ran
        #: past its deadline, for ``finish`` or ``end_locked`` with ``Outcome.TIMEOUT``.
        self.timeout_error: Callable[[Job[Any], int], JobTimeout] = pool._timeout_error
        #: ``prefetch_locked(fits) -> Job | None``: the most urgent waiting job, to send
        #: ahead, if ``fits(job)``; it stays queued (see the class docstring).
        self.prefetch_locked: Callable[[Callable[[Job[Any]], bool]], Job[Any] | None] = pool._take_prefetch_locked
        #: ``started_locked(job, started_at) -> bool``: a prefetched job began at
        #: ``started_at`` (``time.monotonic()``): running now. False if cancelled meanwhile.
        self.started_locked: Callable[[Job[Any], float], bool] = pool._start_prefetched_locked
        #: ``unstart_locked(job, attempt)``: the job was taken (running) but its worker
        #: died before beginning it: waiting again, the attempt unused.
        self.unstart_locked: Callable[[Job[Any], int], None] = pool._unstart_locked
        #: ``give_back_locked(job)``: a prefetched job will not run where it was sent
        #: (its worker died, or an idle worker should take it): back on the queue.
        self.give_back_locked: Callable[[Job[Any]], None] = pool._unprefetch_locked
        #: ``broken(cause, reason=None)``: the backend cannot go on: intake closes (with
        #: ``reason`` for later submits) and every unfinished job fails with PoolBroken.
        self.broken: Broken = pool._break
        #: ``close(reason)``: the backend can no longer run jobs (its event loop
        #: ended): intake closes with ``reason`` and every unfinished job is cancelled.
        self.close: Callable[[str], None] = pool._close_and_cancel

    @property
    def workers(self) -> int:
        """Jobs that may run at once."""
        return self._pool.workers

    @property
    def running(self) -> int:
        """Jobs running now (a gauge)."""
        return self._pool._running

    @property
    def queued(self) -> int:
        """Jobs waiting now, prefetched ones included (a gauge)."""
        return self._pool._queued

    def waiting_locked(self) -> int:
        """Waiting jobs still on the queue, not sent ahead to a worker."""
        pool = self._pool
        return len(pool._heap) - pool._dead_in_heap

    def is_current(self, job: Job[Any], attempt: int) -> bool:
        """Whether ``attempt`` of ``job`` is running and not settled yet."""
        return job._status is _RUNNING and job.attempt == attempt

    def add_abandoned_locked(self, n: int) -> None:
        """Count ``n`` more (or fewer) pieces of work still running after their attempt
        was settled (``stats().abandoned``)."""
        self._pool._abandoned += n

    def add_recycled_locked(self) -> None:
        """A worker was replaced by recycling (``stats().recycled``)."""
        self._pool._recycled += 1

    def initializer_failed(self, exc: BaseException) -> None:
        """The pool's ``initializer`` raised ``exc`` in a worker: the pool is broken, as
        in ``concurrent.futures``: every unfinished job fails with PoolBroken (``exc``
        its cause), and so does every later submit. Call without the lock."""
        _log.critical("pool %s: exception in initializer", self.name, exc_info=exc)
        self._pool._break(
            exc,
            f"pool {self.name} is broken: its initializer {self.options.initializer!r} raised {exc!r}",
        )

    def set_workers_locked(self, n: int) -> None:
        """The backend learnt how many jobs may run at once (a cluster's threads)."""
        self._pool.workers = n


def is_coroutine_function(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    if code is not None and type(fn) is _FunctionType:  # the common case, without inspect's unwrapping
        return bool(code.co_flags & _CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


_FunctionType = types.FunctionType  # not type(is_coroutine_function): compiled, that is Cython's own
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
