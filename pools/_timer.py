"""One timer thread per pool, for retry back-offs and thread-job deadlines.

A heap of due times served by a single thread that sleeps on a condition until the
earliest one: O(log n) per timer and no thread or ``threading.Timer`` per job.
The thread starts on first use and ends with ``stop()``. ``cancel()`` drops a
timer's callback and arguments at once (a finished job must not stay alive until
its deadline); the emptied entries leave the heap when it is rebuilt, once they
are more than half of it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ._callbacks import mark_internal


class Timer:
    def __init__(self, name: str) -> None:
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        # entries are lists [when, seq, fn, args]: seq is unique, so fn is never compared
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._cancelled = 0

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> list[Any] | None:
        """Run ``fn(*args)`` on the timer thread at ``time.monotonic()`` >= ``when``.
        Returns a handle for ``cancel()``, or None (and runs nothing) once the
        timer is stopped."""
        with self._cv:
            if self._stopped:
                return None
            entry = [when, next(self._seq), fn, args]
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:  # only an earlier due time needs the sleeper woken
                self._cv.notify()
            return entry

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> list[Any] | None:
        return self.call_at(time.monotonic() + delay, fn, *args)

    def cancel(self, entry: list[Any]) -> None:
        """The timer need not run (its job ended): forget its callback now."""
        with self._cv:
            if entry[2] is None:
                return
            entry[2] = entry[3] = None
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        mark_internal()  # what it settles runs its done-callbacks elsewhere
        cv = self._cv
        with cv:
            while not self._stopped:
                if not self._heap:
                    cv.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    cv.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                _, _, fn, args = entry
                if fn is None:  # cancelled
                    self._cancelled -= 1
                    continue
                entry[2] = entry[3] = None  # out of the heap: a later cancel() must not count it
                cv.release()
                try:
                    fn(*args)
                except BaseException:  # noqa: BLE001 - a bug in a callback must not stop every later timer
                    threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))
                finally:
                    del fn, args, entry
                    cv.acquire()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread (pending callbacks are dropped); return True if it ended."""
        with self._cv:
            self._stopped = True
            self._heap.clear()
            self._cancelled = 0
            self._cv.notify()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()


def _first(pair: tuple[Any, ...]) -> Any:
    return pair[0]


class DeadlineWatch:
    """The deadlines of running attempts (a handful: one per busy worker), watched
    through one timer entry at the earliest. Arming and disarming a deadline is a
    dict operation under a small lock, where a timer per job would cost a heap push
    and a cancel on the timer's lock; the timer hears only of a deadline earlier
    than every one armed (with one timeout for all jobs: once per sweep)."""

    def __init__(self, timer: Timer, on_expired: Callable[..., Any]) -> None:
        self._timer = timer
        self._on_expired = on_expired
        self._lock = threading.Lock()
        self._due: dict[Any, tuple[float, tuple[Any, ...]]] = {}  # token -> (deadline, args for on_expired)
        self._armed = math.inf  # when the current sweep runs (an older one seeing another time stands down)
        self._pending: set[float] = set()  # times a sweep is scheduled for: never two for one time

    def arm(self, token: Any, deadline: float, *args: Any) -> None:
        with self._lock:
            self._due[token] = (deadline, args)
            if deadline >= self._armed:
                return
            self._armed = deadline
            self._pending.add(deadline)
        self._timer.call_at(deadline, self._sweep, deadline)

    def disarm(self, token: Any) -> None:
        with self._lock:
            self._due.pop(token, None)

    def _sweep(self, when: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._pending.discard(when)
            if when != self._armed:
                return  # superseded by an earlier deadline, whose sweep carries on
            expired = sorted(((d, token) for token, (d, _) in self._due.items() if d <= now), key=_first)
            fire = [self._due.pop(token)[1] for _, token in expired]
            self._armed = nxt = min((deadline for deadline, _ in self._due.values()), default=math.inf)
            schedule = nxt != math.inf and nxt not in self._pending
            if schedule:
                self._pending.add(nxt)
        if schedule:
            self._timer.call_at(nxt, self._sweep, nxt)
        for args in fire:  # in deadline order; one failing callback must not keep the others from firing
            try:
                self._on_expired(*args)
            except BaseException:  # noqa: BLE001 - reported as the timer reports its own
                threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))
