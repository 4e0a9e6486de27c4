"""Done-callbacks of the jobs that a pool's own threads settle.

A pool's own threads deliver results and deadlines for every job of the pool: the
timer thread (deadlines of running jobs, retry back-offs), the process backend's
manager thread and the Dask backend's loop thread. User code run on one of them
would hold up every other job's timeout, retry and result while it runs. So a job
settled on such a thread (one that called :func:`mark_internal`) is resolved there
— its state set, ``result()`` and ``await job`` woken — and its done-callbacks
run on the pool's callback thread instead::

    internal thread ──settle: state, waiters, awaiters──▶ result() / await wake at once
          │ the job's done-callbacks
          ▼
    SimpleQueue ──▶ callback thread (started on first use) ──▶ fn(job), in settle order

A job that ends on a worker (a thread of the thread backend, the asyncio pool's
event loop) runs its callbacks right there, as ``concurrent.futures`` does; a job
cancelled with ``job.cancel()`` runs them in the caller's thread, also as there.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures._base import LOGGER  # where concurrent.futures logs a failing callback
from typing import Any

_where = threading.local()


def mark_internal() -> None:
    """Mark the calling thread as one of a pool's own: jobs it settles run their
    done-callbacks on the pool's callback thread."""
    _where.internal = True


def on_internal_thread() -> bool:
    return getattr(_where, "internal", False)


class CallbackRunner:
    """One thread, started on first use, that runs deferred done-callbacks in order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # queued or running
        self._thread: threading.Thread | None = None
        self._stopped = False

    def run_later(self, call: Callable[[], Any]) -> None:
        """Run ``call()`` (which must not raise) on the callback thread; once the
        pool is shut down, when no deadline or result is left to deliver, right here."""
        with self._lock:
            if not self._stopped:
                self._pending += 1
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
                self._queue.put(call)  # under the lock: never behind stop()'s end marker
                return
        call()

    def _run(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            try:
                call()
            except BaseException:  # noqa: BLE001 - one callback must not end the others' thread
                LOGGER.exception("exception calling a done-callback on %s", self._name)
            finally:
                del call
                with self._lock:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.notify_all()

    def stop(self, deadline: float | None) -> bool:
        """Let the queued callbacks run (until ``deadline``, a ``time.monotonic()``
        value, or for as long as they take), then end the thread; True if it ended.
        Called from a callback (one that shut its pool down), it does not wait: the
        callbacks queued behind that one can only run on this very thread, which runs
        them after it and then ends."""
        with self._lock:
            thread = self._thread
            here = thread is threading.current_thread()
            while self._pending and not here:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._idle.wait(remaining)
            self._stopped = True
            if thread is None:
                return True
            self._queue.put(None)
        if here:
            return True
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not thread.is_alive()
