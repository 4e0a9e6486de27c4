"""One timer thread per pool, for retry back-offs and thread-job deadlines.

A heap of due times served by a single thread that sleeps on a condition until the
earliest one: O(log n) per timer and no thread or ``threading.Timer`` per job.
The thread starts on first use and ends with ``stop()``.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import threading
import time
from typing import Any, Callable


class Timer:
    def __init__(self, name: str) -> None:
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the timer thread at ``time.monotonic()`` >= ``when``.
        Returns False (and runs nothing) once the timer is stopped."""
        with self._cv:
            if self._stopped:
                return False
            entry = (when, next(self._seq), fn, args)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:  # only an earlier due time needs the sleeper woken
                self._cv.notify()
            return True

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> bool:
        return self.call_at(time.monotonic() + delay, fn, *args)

    def _run(self) -> None:
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
                _, _, fn, args = heapq.heappop(self._heap)
                cv.release()
                try:
                    fn(*args)
                except BaseException:  # noqa: BLE001 - a bug in a callback must not stop every later timer
                    threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))
                finally:
                    cv.acquire()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread (pending callbacks are dropped); return True if it ended."""
        with self._cv:
            self._stopped = True
            self._heap.clear()
            self._cv.notify()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()
