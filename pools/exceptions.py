"""Every exception poolbench raises, in one hierarchy under :class:`PoolError`.

Errors about a job carry its ``job_id``. Errors from a job's own code are *not*
wrapped: ``job.result()`` re-raises the job's exception itself, with ``job_id`` set
on it and the worker's traceback attached (for processes as ``__cause__``, a
:class:`RemoteTraceback`, as ``concurrent.futures.ProcessPoolExecutor`` does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

__all__ = [
    "BackendUnavailable",
    "InvalidArgument",
    "InvalidCallable",
    "JobCancelled",
    "JobTimeout",
    "Leaked",
    "NoCurrentJob",
    "PoolBroken",
    "PoolClosed",
    "PoolError",
    "QueueFull",
    "RaceFailure",
    "RemoteTraceback",
    "UnknownBackend",
    "WorkerCrashed",
]


class PoolError(Exception):
    """Base class of every error raised by poolbench itself.

    ``job_id`` is the id of the job concerned, or ``None`` when the error is not
    about one job (a bad argument to ``create_pool``, say).
    """

    def __init__(self, message: str = "", *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id

    def __reduce__(self) -> tuple[Any, ...]:  # keep job_id across pickling (process workers, retries)
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[PoolError], args: tuple[Any, ...], state: dict[str, Any]) -> PoolError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class InvalidArgument(PoolError, ValueError):
    """An option has a value outside its constraint (``workers=0``, ``timeout=-1``...).

    Raised at once, by ``create_pool`` or ``submit``, before anything is queued.
    """


class InvalidCallable(InvalidArgument, TypeError):
    """The callable cannot run on this backend: not picklable for "process", a plain
    function where "asyncio" needs a coroutine function, or the reverse."""


class UnknownBackend(InvalidArgument):
    """``create_pool`` was given a backend name that is not registered."""


class BackendUnavailable(PoolError, ImportError):
    """The backend is known but its optional dependency is not installed."""


class QueueFull(PoolError):
    """The bounded queue had no room: at once with ``overflow="reject"``, or after
    ``wait=`` seconds with ``overflow="block"``. The job was not accepted."""


class PoolClosed(PoolError, RuntimeError):
    """``submit`` was called after ``shutdown`` began. The job was not accepted."""


class JobTimeout(PoolError, TimeoutError):
    """A job's attempt ran past its ``timeout=`` and was stopped (see the README for
    what "stopped" means on each backend)."""


class JobCancelled(PoolError, concurrent.futures.CancelledError):
    """Raised inside a job by ``current_context().check()`` once the job was cancelled.

    ``job.result()`` on a cancelled job raises the standard
    ``concurrent.futures.CancelledError``, of which this is a subclass.
    """


class LoopJobCancelled(JobCancelled, asyncio.CancelledError):
    """What ``result()`` and ``exception()`` raise for a cancelled job that is an
    asyncio future (submitted on the loop its asyncio pool runs on): both the
    ``concurrent.futures`` and the ``asyncio`` ``CancelledError``, so that
    ``asyncio.wait_for`` turns it into its ``TimeoutError`` and a task that reads it
    is cancelled, as with any asyncio future, while ``except Exception`` still
    catches it in synchronous code."""


class WorkerCrashed(PoolError):
    """The worker process running the job died (``os._exit``, a signal, a segfault,
    ``MemoryError``...). Only that job fails; the pool replaces the worker.

    ``exitcode`` is the process's exit code (negative: killed by signal
    ``-exitcode``), ``signal_name`` the signal's name or ``None``, and ``cause`` the
    likely cause in words.
    """

    def __init__(
        self,
        message: str = "",
        *,
        job_id: int | None = None,
        exitcode: int | None = None,
        signal_name: str | None = None,
        cause: str = "",
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.exitcode = exitcode
        self.signal_name = signal_name
        self.cause = cause


class PoolBroken(PoolError, concurrent.futures.BrokenExecutor):
    """The pool cannot serve any more (new worker processes cannot be started, or
    an ``initializer`` failed: its exception is the ``__cause__``). Every job not yet
    finished fails with this error, and so does every later ``submit``. A
    ``concurrent.futures.BrokenExecutor``, as ``BrokenThreadPool`` and
    ``BrokenProcessPool`` are."""


class NoCurrentJob(PoolError, LookupError):
    """``pools.current_context()`` was called outside a job."""


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in a worker process.

    Attached as ``__cause__`` of the job's exception, so that a traceback printed in
    the parent shows where the job failed in the child.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class Leaked(PoolError, AssertionError):
    """``pools.testing`` found a thread, process, task or pool that outlived the code
    under check. ``leaks`` lists them, one description each."""

    def __init__(self, message: str = "", *, leaks: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.leaks = leaks


class RaceFailure(PoolError, AssertionError):
    """A run under race mode failed (``pools.testing.race.run_with_race``). ``seed``
    replays its schedule: ``race_mode(seed=...)``; the run's exception is the cause."""

    def __init__(self, message: str = "", *, seed: int = 0) -> None:
        super().__init__(message)
        self.seed = seed
