"""The loop that runs inside each worker process of the "process" backend.

Kept apart from ``process.py`` so that a worker imports as little as possible.
Protocol over the worker's own pipe (pickled): worker → parent ``b"ready"`` once,
at start; parent → worker a list of jobs ``(job_id, attempt, timeout, payload,
slot)``, where ``payload`` is ``(pickled fn, pickled args or b"")``, or ``b""`` to stop;
worker → parent, for each job in order, its outcome message (``pools.remote``:
a result, a failure, or "skipped").

The list may hold more than the job to run now: the next ones wait here so that
the worker never idles for a round trip. Whether each may still start is decided
under a lock shared with the parent, in a small shared array (one byte per slot):
the parent marks a slot PENDING before sending; the worker turns PENDING into
STARTED (and writes the start time) just before running the job; the parent turns
PENDING into CANCELLED (the job was cancelled) or REVOKED (the parent is about to
kill this worker and will requeue the job), and the worker skips those. When
the job returns, the worker writes its end time beside its start time, before it
sends the result: the parent sizes backlogs by these run times, not by when it
read the result.
"""

from __future__ import annotations

import collections
import os
import pickle
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from ._context import JobContext, set_current_context
from ._lifeline import exit_with
from .remote import encode_failure, encode_result, encode_skipped

if TYPE_CHECKING:  # for the annotations only: a worker imports as little as it can
    import ctypes
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Lock

#: what a new worker sends once it can take jobs
READY = b"ready"
#: what a new worker sends, followed by the failure (``pools.remote``), when the pool's
#: initializer raised: it then exits
INIT_FAILED = b"initializer failed:"

#: states of a slot in the shared array
FREE, PENDING, STARTED, CANCELLED, REVOKED = 0, 1, 2, 3, 4

#: exit code of a worker whose job raised MemoryError: its heap may be exhausted,
#: so it leaves rather than risk failing on the next job.
EXIT_MEMORY_ERROR = 86

#: exit code of a worker that outlived the pool's process: nobody reads it
EXIT_POOL_GONE = 87


class _Rss:
    """This process's resident set size in bytes, read cheaply after each job: one
    ``pread`` of ``/proc/self/statm`` (Linux), else the peak from ``getrusage``."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            self._fd = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __call__(self) -> int:
        if self._fd is not None:
            return int(os.pread(self._fd, 128, 0).split()[1]) * self._page
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def worker_main(
    conn: Connection[bytes, bytes],
    lock: Lock,
    states: ctypes.Array[ctypes.c_byte],
    starts: ctypes.Array[ctypes.c_double],
    ends: ctypes.Array[ctypes.c_double],
    pool_pid: int,
    init: bytes = b"",
    rss: Any = None,
) -> None:
    """``pool_pid``: the pool's process, whose end ends this worker.
    ``init``: the pickled ``(initializer, initargs)`` to run first, or ``b""``.
    ``rss``: a shared ``c_int64`` where the worker writes its RSS after each job
    (the pool recycles it above ``max_memory_per_worker``), or None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    exit_with(pool_pid, EXIT_POOL_GONE, name="pool-watch")  # its pool's process, however it ends
    recv, send = conn.recv_bytes, conn.send_bytes
    loads = pickle.loads
    monotonic = time.monotonic
    backlog: collections.deque[tuple[int, int, float | None, tuple[bytes, bytes], int]] = collections.deque()
    last_fn_bytes: bytes | None = None  # most jobs of a pool run the same function
    last_fn: Any = None
    if init:
        try:
            initializer, initargs = pickle.loads(init)
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - sent to the pool, which breaks
            send(INIT_FAILED + encode_failure(0, 0, exc))
            return
        del initializer, initargs
    measure = None if rss is None else _Rss()
    send(READY)  # the parent starts a job's clock only once its worker is ready for it
    while True:
        if not backlog:
            try:
                data = recv()
            except (EOFError, OSError):
                return  # the pool is gone
            if not data:
                return
            backlog.extend(loads(data))
        job_id, attempt, timeout, payload, slot = backlog.popleft()
        with lock:
            state = states[slot]
            if state == PENDING:
                states[slot] = STARTED
                starts[slot] = now = monotonic()
            else:
                now = 0.0  # not begun: skipped below
        if state != PENDING:  # cancelled or revoked before it began
            send(encode_skipped(job_id, attempt))
            continue
        set_current_context(JobContext(job_id, attempt, None if timeout is None else now + timeout))
        fn = args = value = None
        try:
            fn_bytes, args_bytes = payload
            if fn_bytes != last_fn_bytes:
                last_fn, last_fn_bytes = loads(fn_bytes), fn_bytes
            fn = last_fn
            args = loads(args_bytes) if args_bytes else ()
            value = fn(*args)
        except MemoryError:
            os._exit(EXIT_MEMORY_ERROR)
        except BaseException as exc:  # noqa: BLE001 - sent to the job's caller
            out = encode_failure(job_id, attempt, exc)
        else:
            out = encode_result(job_id, attempt, value)
        ends[slot] = monotonic()
        del value, fn, args, payload
        if measure is not None:
            rss.value = measure()  # before the result: the pool reads it when the result comes
        send(out)
