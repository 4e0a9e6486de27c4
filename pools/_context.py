"""The job context: what a running job knows about itself, like Go's ``context.Context``.

Every backend sets it before calling the job's function, so ``current_context()``
works the same in a thread, a worker process or an asyncio task.
"""

from __future__ import annotations

import contextvars
import threading
import time

from .exceptions import JobCancelled, JobTimeout, NoCurrentJob

__all__ = ["JobContext", "current_context"]

_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("poolbench_job")


class JobContext:
    """The context of one attempt of one job.

    ``deadline`` is a ``time.monotonic()`` value (or ``None`` without a timeout);
    ``cancelled()`` turns true when the job is cancelled or its deadline passes, and
    ``check()`` raises :class:`~pools.JobCancelled` or :class:`~pools.JobTimeout`
    then. Long-running thread jobs should call ``check()`` (or wait with
    ``wait()``) now and then: a Python thread cannot be stopped from outside.
    """

    __slots__ = ("_cancelled", "_event", "attempt", "deadline", "job_id")

    # One lock for every context's rare state changes (cancel, first wait): a lock
    # per job would cost every job, and almost none ever waits or is cancelled.
    _lock = threading.Lock()

    def __init__(self, job_id: int, attempt: int, deadline: float | None) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.deadline = deadline
        self._cancelled = False
        self._event: threading.Event | None = None  # made on first wait(): most jobs never wait

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def cancelled(self) -> bool:
        """True once the job was cancelled or its deadline has passed."""
        if self._cancelled:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def check(self) -> None:
        """Raise if the job should stop: ``JobCancelled`` or ``JobTimeout``."""
        if self._cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled", job_id=self.job_id)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise JobTimeout(f"job {self.job_id} passed its deadline", job_id=self.job_id)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is cancelled, its deadline passes, or ``timeout``
        seconds elapse; return ``cancelled()``. The blocking form of Go's
        ``<-ctx.Done()``, for thread and process jobs."""
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            event = self._event
        limit = self.remaining()
        if timeout is not None:
            limit = timeout if limit is None else min(limit, timeout)
        event.wait(limit)
        return self.cancelled()

    def _cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._event is not None:
                self._event.set()

    def __repr__(self) -> str:
        return (
            f"JobContext(job_id={self.job_id}, attempt={self.attempt}, "
            f"remaining={self.remaining()}, cancelled={self.cancelled()})"
        )


def set_current_context(ctx: JobContext) -> contextvars.Token[JobContext]:
    """Make ``ctx`` what ``current_context()`` returns in this thread or task, until
    ``reset_current_context(token)`` (for backends: around each attempt)."""
    return _current.set(ctx)


def reset_current_context(token: contextvars.Token[JobContext]) -> None:
    _current.reset(token)


def cancel_context(ctx: JobContext) -> None:
    """Tell a running attempt that it should stop: ``ctx.cancelled()`` turns true and
    ``ctx.wait()`` returns (for backends: on cancel or timeout)."""
    ctx._cancel()


def current_context() -> JobContext:
    """Return the context of the job that is running in the caller's thread, task or
    process. Raises :class:`~pools.NoCurrentJob` outside a job."""
    try:
        return _current.get()
    except LookupError:
        raise NoCurrentJob(
            "current_context() was called outside a job: it works only in code that a "
            "pool is running (a function passed to submit/map)"
        ) from None
