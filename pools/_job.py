"""``Job``: a submitted job, as its caller and its pool's backend see it."""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._future import LazyFuture
from ._types import JobStatus, Retry
from .exceptions import PoolError

if TYPE_CHECKING:
    from ._core import Pool

__all__ = ["Job"]

T = TypeVar("T")

_job_ids = itertools.count(1)
_QUEUED = JobStatus.QUEUED


class Job(LazyFuture[T]):
    """A submitted job. It *is* a ``concurrent.futures.Future`` (so ``wait``,
    ``as_completed`` and ``asyncio.wrap_future`` take it) and it is awaitable.

    Unlike a plain ``Future``, ``cancel()`` also stops a running job. The
    underlying ``Future`` stays pending until the job ends, so ``running()`` and
    ``status`` come from the pool, not from the ``Future``.

    For backends (``pools.lowlevel``): ``payload`` is what ``Backend.prepare``
    returned, ``submitter_context`` the submitter's ``contextvars`` (when the backend
    carries them), ``backend_slot`` the backend's own record of the running attempt
    (or of where a job sent ahead waits), ``prefetched`` whether a waiting job was sent
    ahead to a worker. Once the job
    ended for good, ``fn``, ``args``, ``payload`` and ``submitter_context`` are None:
    a pool keeps none of its caller's objects past their job.
    """

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        payload: Any,
        priority: int,
        timeout: float | None,
        retry: Retry | None,
        submitter_context: contextvars.Context | None,
    ) -> None:
        LazyFuture.__init__(self)
        self.job_id: int = next(_job_ids)
        self.fn: Callable[..., T] | None = fn
        self.args: tuple[Any, ...] | None = args
        self.priority = priority
        self.timeout = timeout
        self.retry = retry
        self.attempt = 0  # number of the current or last attempt (1-based)
        self.payload = payload
        self.submitter_context = submitter_context
        self.backend_slot: Any = None
        self._pool = pool
        self._status = _QUEUED
        self._enqueued_at = 0.0
        self._started_at = 0.0
        self._prefetched = False  # QUEUED, but sent ahead to a worker rather than on the heap

    def _defer(self, call: Callable[[], Any]) -> None:
        self._pool._callback_runner.run_later(call)

    @property
    def status(self) -> JobStatus:
        """queued, running, retrying, succeeded, failed, cancelled or timed_out."""
        return self._status

    @property
    def prefetched(self) -> bool:
        """Waiting, but sent ahead to a worker (see ``Dispatcher.prefetch_locked``)."""
        return self._prefetched

    @property
    def enqueued_at(self) -> float:
        """``time.monotonic()`` when the job (or its latest retry) entered the queue."""
        return self._enqueued_at

    @property
    def started_at(self) -> float:
        """``time.monotonic()`` when a worker took its latest attempt (0.0 if none yet)."""
        return self._started_at

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the job, waiting or running; return True if it took effect.
        (``msg``, asyncio's cancel message, is taken and not kept.)"""
        return self._pool._cancel(self)

    def running(self) -> bool:
        return self._status is JobStatus.RUNNING

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self._status} attempt={self.attempt} on {self._pool.backend}>"


def tag(exc: BaseException, job_id: int) -> None:
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
