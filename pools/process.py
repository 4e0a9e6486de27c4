"""The "process" backend: picklable callables in worker processes, one pipe each.

Data flow::

    submit() ─pickle (fn, args)─▶ Pool heap ─(wake pipe)─▶ manager thread
                                                            │  one select.poll over the wake pipe,
                                                            │    busy workers' pipes and every
                                                            │    worker's sentinel; timeout = the
                                                            │    nearest job deadline (first, up to
                                                            │    1 ms to let results gather while
                                                            │    every worker has 2+ jobs ahead)
                       ┌──── send_bytes([job, next jobs…]) ─┤
                       ▼                                    │
             worker process 1..W  ── send_bytes(result) ───▶│ dispatcher.finish(), then the
                       ▲    ▲                               │ worker's next job is running
                       │    └── shared slot states (lock) ──┤ cancel a job still waiting there
                       └── SIGKILL + replace ◀── deadline passed / job cancelled / worker died

Each worker has its own pipe and runs one job at a time, so the manager always
knows which job a worker holds: killing a worker (timeout, cancel) or losing one
(segfault, ``os._exit``, the OOM killer) fails exactly that job, and a fresh
worker takes its place. There is no queue shared between processes to corrupt,
which is why ``ProcessPoolExecutor`` breaks as a whole on a crash and this
pool does not.

When more jobs wait than there are workers, a worker is sent its next few jobs
with the current one (a backlog, by the shared policy ``pools.remote.Backlog``: at most
``PREFETCH`` jobs, 32 KiB of payload and 10 ms of work), so that it does not idle for a round trip
between jobs. They stay *queued* in every sense: counted as waiting, their
clock not started, cancellable without touching the worker (a shared slot state,
see ``_process_worker``), and put back on the heap if their worker dies or is
replaced. The price: a job prefetched behind a long one waits for it, even if
another worker frees up first — which is why only a share of a deep queue
(``waiting // workers``) is ever prefetched. While every worker has two jobs or
more sent ahead, the manager lets results gather for up to 1 ms before it reads
them, several in one round (``_coalesce``); the backlog is sized by the run times
the workers measure themselves, so that this wait does not count as work.

Lifecycle: each worker runs the pool's ``initializer`` before it says it is ready
(one that raises breaks the pool). A worker *retires* — it is sent the stop message
after the jobs it holds, sends their results, exits, and is reaped without
replacement — when it has begun ``max_tasks_per_worker`` jobs (it is never sent
more than that, so nothing sent ahead is lost), after a job that left its RSS above
``max_memory_per_worker`` (the jobs sent ahead to it and not begun are taken back
first, and requeued), when ``resize`` shrinks the pool, or when it idled
``idle_timeout`` above ``min_workers``. A recycled worker's replacement starts at
once; workers are added back to the size (``resize``), or on demand above
``min_workers``.
"""

from __future__ import annotations

import collections
import ctypes
import math
import multiprocessing
import multiprocessing.context
import os
import pickle
import select
import signal
import struct
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Lock
from typing import Any, cast

from ._forkserver import add_forkserver_preload
from ._process_worker import (
    CANCELLED,
    EXIT_MEMORY_ERROR,
    FREE,
    INIT_FAILED,
    PENDING,
    READY,
    REVOKED,
    STARTED,
    worker_main,
)
from .exceptions import InvalidArgument, InvalidCallable, WorkerCrashed
from .lowlevel import Backend, Capabilities, Dispatcher, Job, JobStatus, Outcome, check_plain_callable, mark_internal
from .remote import LATE, SKIPPED, Backlog, decode, payload_size

__all__ = ["ProcessBackend"]

OK, ERROR, CRASH = Outcome.OK, Outcome.ERROR, Outcome.CRASH
_QUEUED = JobStatus.QUEUED

_STOP = b""

_SIGNAL_CAUSES = {
    signal.SIGKILL: "killed by SIGKILL: most often the kernel's out-of-memory killer (see dmesg), or another process",
    signal.SIGSEGV: "a segmentation fault: a bug in native code (a C extension, ctypes)",
    signal.SIGABRT: "an abort in native code (a failed assertion in a C library)",
    signal.SIGBUS: "a bus error in native code (a truncated memory-mapped file, say)",
    signal.SIGFPE: "a floating-point exception in native code",
    signal.SIGTERM: "terminated by SIGTERM from another process",
}


def describe_exit(exitcode: int | None) -> tuple[str | None, str]:
    """(signal name, likely cause) of a worker's exit code."""
    if exitcode is None:
        return None, "the worker process vanished without an exit status"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return None, f"killed by signal {-exitcode}"
        return sig.name, _SIGNAL_CAUSES.get(sig, f"killed by {sig.name}")
    if exitcode == EXIT_MEMORY_ERROR:
        return None, "MemoryError in the job: the worker ran out of memory"
    return None, (
        f"the worker exited with code {exitcode}: the job (or a native library it called) "
        "ended the process, e.g. with os._exit()"
    )


def _default_start_method() -> str:
    # forkserver: workers fork from a small clean server process, not from this
    # (multi-threaded) one, so a lock held by another thread cannot be inherited.
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


#: most jobs a worker holds at once: the running one and its backlog
PREFETCH = 16


#: the backlog policy: at most 32 KiB of payload waiting in a worker's backlog (below
#: a pipe's buffer, so that sending to a busy worker never blocks the manager), and
#: 10 ms of work by the recent run times. Enough to hide the round trip to the manager
#: even when the manager is late by a few ms (a busy or jittery machine: at 5 ms, 1 ms
#: sleeps on 8 workers left workers dry for 3-5 ms at the 99th percentile; measured
#: 2026-12-02, the pool alone, pure modules: 87-91% of the ideal at 5 ms, 92-94% at
#: 10 ms; the contenders preset, compiled: 76-83% and 82-86%); no more, since a job sent ahead
#: waits behind the ones before it, and the end of a run for the longest backlog
#: (16 no-ops, but 10 jobs of 1 ms; an idle worker takes jobs back from it).
def _backlog_policy() -> Backlog:
    return Backlog(most_jobs=PREFETCH, most_bytes=32 * 1024, cover=0.010)


class _Inbox:
    """Messages from a worker, framed as ``multiprocessing.Connection`` frames them
    (a 4-byte big-endian length, or -1 and an 8-byte one), read in as few system
    calls as the data allows: one read takes every result sent so far, where
    ``recv_bytes`` costs two reads and a poll per message."""

    __slots__ = ("buf", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()

    def read(self) -> list[bytes]:
        """Read what the worker sent (call when the pipe is readable); return the
        complete messages. Raises EOFError once the worker is gone."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            raise EOFError
        buf = self.buf
        buf += chunk
        out, pos = [], 0
        while len(buf) - pos >= 4:
            (size,) = struct.unpack_from("!i", buf, pos)
            head = 4
            if size == -1:
                if len(buf) - pos < 12:
                    break
                (size,) = struct.unpack_from("!Q", buf, pos + 4)
                head = 12
            end = pos + head + size
            while len(buf) < end:  # a large message still arriving: read the rest now, as recv_bytes would
                more = os.read(self.fd, min(end - len(buf), 1 << 24))
                if not more:
                    raise EOFError
                buf += more
            out.append(bytes(buf[pos + head : end]))
            pos = end
        del buf[:pos]
        return out

    def read_left(self) -> list[bytes]:
        """Everything still readable without blocking (the worker has ended)."""
        out: list[bytes] = []
        poller = select.poll()  # not select.select: that refuses fd numbers >= 1024
        poller.register(self.fd, select.POLLIN)
        try:
            while poller.poll(0):
                out += self.read()
        except (EOFError, OSError):
            pass
        return out


class _SlotLock:
    """The lock shared with a worker over its slot states, as the manager takes it:
    a worker killed (SIGKILL, the OOM killer) inside its few instructions under the
    lock would leave it held for ever, so the manager waits for it only while the
    worker lives; a dead worker changes no slot any more."""

    __slots__ = ("_held", "_lock", "_process")

    def __init__(self, lock: Lock, process: BaseProcess) -> None:
        self._lock, self._process, self._held = lock, process, False

    @property
    def raw(self) -> Lock:
        """The lock itself, for another thread than the manager's (which alone uses
        this wrapper: ``_held`` is its own)."""
        return self._lock

    def __enter__(self) -> None:
        while not self._lock.acquire(True, 0.5):
            if not self._process.is_alive():
                self._held = False
                return
        self._held = True

    def __exit__(self, *exc_info: Any) -> None:
        if self._held:
            self._held = False
            self._lock.release()


class _Worker:
    __slots__ = (
        "attempt",
        "backlog",
        "backlog_bytes",
        "conn",
        "deadline",
        "ends",
        "free",
        "idle_since",
        "inbox",
        "job",
        "lock",
        "process",
        "ready",
        "retiring",
        "rss",
        "sent",
        "sentinel",
        "slot",
        "starts",
        "states",
    )

    def __init__(
        self,
        process: BaseProcess,
        conn: Connection[bytes, bytes],
        lock: Lock,
        states: ctypes.Array[ctypes.c_byte],
        starts: ctypes.Array[ctypes.c_double],
        ends: ctypes.Array[ctypes.c_double],
        rss: Any,
    ) -> None:
        self.process = process
        self.rss = rss  # its RSS after its latest job (a shared c_int64), or None
        self.sent = 0  # jobs sent to it, less those it skipped: max_tasks_per_worker counts these
        self.retiring = False  # sent the stop message: it takes no job and is not replaced
        self.idle_since = time.monotonic()
        self.sentinel = process.sentinel  # an fd; read once (a property that checks, on Process)
        self.conn = conn
        self.inbox = _Inbox(conn.fileno())
        self.job: Job[Any] | None = None  # the job running now (its result is the next message)
        self.attempt = 0
        self.deadline: float | None = None
        self.ready = False  # until its READY message: a job's clock must not run during start-up
        self.slot = 0  # the running job's slot
        # sent, not begun: (job, slot, payload bytes counted in backlog_bytes)
        self.backlog: collections.deque[tuple[Job[Any], int, int]] = collections.deque()
        self.backlog_bytes = 0
        self.free = list(range(PREFETCH - 1, -1, -1))
        self.lock = _SlotLock(lock, process)
        self.states, self.starts, self.ends = states, starts, ends

    def held(self) -> int:
        return (self.job is not None) + len(self.backlog)


#: results are let gather (see ``ProcessBackend._coalesce``) only while every worker has
#: at least this many jobs sent ahead: one late wake-up of the manager then idles nobody
COALESCE_AHEAD = 2
#: ... and for at most this long (seconds): what a result may wait before it is read
COALESCE_MOST = 0.001

#: consecutive workers that die before they are ready: the pool cannot start workers
START_FAILURES_LIMIT = 5


class ProcessBackend(Backend):
    """Worker processes; ``start_method`` is "forkserver" (default on Linux),
    "spawn" or "fork". Jobs and results cross by pickle."""

    name = "process"
    capabilities = Capabilities(
        runs="callables",
        stops_running_jobs=True,
        survives_crashes=True,
        carries_contextvars=False,
        batches_map=True,
        lifecycle=frozenset(
            {"initializer", "max_tasks_per_worker", "max_memory_per_worker", "min_workers", "idle_timeout", "resize"}
        ),
    )

    def __init__(self, dispatcher: Dispatcher, *, workers: int | None = None, start_method: str | None = None) -> None:
        super().__init__(dispatcher)
        self._lock = dispatcher.lock
        method = start_method or _default_start_method()
        if method not in multiprocessing.get_all_start_methods():
            raise InvalidArgument(
                f"start_method must be one of {multiprocessing.get_all_start_methods()}, got {method!r}"
            )
        self.start_method = method
        # Every start method's context has .Process; the stubs give it to the concrete ones only.
        self._mp = cast(
            "multiprocessing.context.DefaultContext | multiprocessing.context.SpawnContext | "
            "multiprocessing.context.ForkContext | multiprocessing.context.ForkServerContext",
            multiprocessing.get_context(method),
        )
        # The last callable (a weak reference: the pool must not keep it alive) and its pickle.
        self._fn_cache: tuple[Callable[[], Any] | None, bytes] = (None, b"")
        options = dispatcher.options
        self._init = b""
        if options.initializer is not None:
            try:
                self._init = pickle.dumps((options.initializer, options.initargs), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as err:
                raise InvalidArgument(
                    f"the 'process' backend sends the initializer to each worker process by pickle, and "
                    f"{options.initializer!r} with initargs {options.initargs!r} cannot be pickled ({err}): use a "
                    "function defined at the top level of a module and picklable arguments"
                ) from err
        self._budget = options.max_tasks_per_worker
        self._memory = options.max_memory_per_worker
        self._min, self._idle = options.min_workers, options.idle_timeout

    # ------------------------------------------------------------------ hooks

    def prepare(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bytes, bytes]:
        """The payload: ``fn`` and ``args`` pickled apart, so that ``fn``, the same
        for most jobs, is pickled once (a function pickles by reference, a lookup
        that costs more than a small job's arguments) and unpickled once per worker."""
        check_plain_callable(self.name, fn)
        cached, fn_bytes = self._fn_cache
        try:
            if cached is None or cached() is not fn:
                fn_bytes = pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
                try:
                    self._fn_cache = (weakref.ref(fn), fn_bytes)
                except TypeError:  # a builtin: pickled by name each time, cheaply
                    self._fn_cache = (None, b"")
            return fn_bytes, (pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL) if args else b"")
        except Exception as err:
            raise InvalidCallable(
                f"the 'process' backend sends each job to a worker process by pickle, and "
                f"{fn!r} with its arguments cannot be pickled ({err}): use a function defined at "
                "the top level of a module (not a lambda or a nested function) and picklable arguments"
            ) from err

    def start(self) -> None:
        if self.start_method == "forkserver":
            add_forkserver_preload("pools._process_worker")  # imported once, not by every worker
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._wake_pending = False
        self._pipe_closed = False
        self._start_failures = 0
        self._steals = 0  # backlog jobs taken back for an idle worker (for tests)
        self._backlog_cancels = False  # set by stop_attempt: _enforce looks at the backlogs
        self._backlog = _backlog_policy()
        self._stopping = False
        self._broken = False  # the initializer failed: no worker starts any more
        # None: a worker being replaced, or not replaced because the pool is stopping
        first = self.dispatcher.workers if self._min is None else self._min
        self._workers: list[_Worker | None] = [self._spawn() for _ in range(first)]
        self._manager = threading.Thread(target=self._manage, name=f"{self.dispatcher.name}-manager", daemon=True)
        self._manager.start()

    def wake_locked(self) -> None:
        if not self._wake_pending and not self._pipe_closed:
            self._wake_pending = True
            os.write(self._wake_w, b"\0")

    def _wake(self) -> None:
        with self._lock:
            self.wake_locked()

    def stop_attempt(self, job: Job[Any], attempt: int) -> None:
        # The manager sees the job settled and kills its worker, or, for a job still
        # in a worker's backlog, marks it there so that the worker skips it.
        job.backend_slot = None  # (where a job sent ahead waited: claim_prefetched_locked)
        self._backlog_cancels = True
        self._wake()

    def claim_prefetched_locked(self, job: Job[Any]) -> bool:
        # The slot the job waits in, in its worker's shared array: the worker turns
        # PENDING into STARTED under the same lock just before it begins the job.
        where = job.backend_slot
        if not isinstance(where, tuple):
            return True
        lock, states, slot = where
        # The raw lock, with a bound: this runs on the canceller's thread with the
        # pool's lock held, and a worker killed inside its few instructions under the
        # lock never releases it (then: allowed, and stop_attempt sees to the rest).
        if not lock.acquire(True, 0.5):
            return True
        try:
            if states[slot] == STARTED:
                return False
            if states[slot] == PENDING:
                states[slot] = CANCELLED  # the worker skips it (REVOKED: it is coming back)
        finally:
            lock.release()
        job.backend_slot = None  # nothing reads it after: keep no worker's lock or arrays alive
        return True

    # ------------------------------------------------------------------ manager

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        lock = self._mp.Lock()
        states = self._mp.RawArray(ctypes.c_byte, PREFETCH)
        starts = self._mp.RawArray(ctypes.c_double, PREFETCH)
        ends = self._mp.RawArray(ctypes.c_double, PREFETCH)
        rss = None if self._memory is None else self._mp.RawValue(ctypes.c_int64, 0)
        process = self._mp.Process(
            target=worker_main,
            args=(child_conn, lock, states, starts, ends, os.getpid(), self._init, rss),
            name=f"{self.dispatcher.name}-worker",
            daemon=True,
        )
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn, lock, states, starts, ends, rss)

    def _live(self) -> list[_Worker]:
        """The workers that count toward the size: not retiring."""
        return [w for w in self._workers if w is not None and not w.retiring]

    def alive_locked(self) -> int:
        return len(self._live())  # (a list the manager changes: copied whole under the GIL)

    def resize_locked(self, workers: int) -> None:
        self.wake_locked()  # the manager starts or retires workers (_reconcile)

    def _retire(self, w: _Worker, *, recycled: bool) -> None:
        """Stop giving ``w`` jobs, take back those sent and not begun, and send it the
        stop message after them: it exits once its current job ends."""
        if w.retiring:
            return
        w.retiring = True
        with w.lock:
            revoked = self._revoke_locked(w, len(w.backlog))
        self._give_back(revoked)
        if recycled:
            with self._lock:
                self.dispatcher.add_recycled_locked()
        try:
            w.conn.send_bytes(_STOP)
        except OSError:
            pass  # died: its sentinel says so

    def _reconcile(self) -> None:
        """Match the workers to the size: start them (all at once, or on demand above
        ``min_workers``), retire the extra ones, idle ones first; and retire the
        workers idle ``idle_timeout`` above ``min_workers``."""
        if self._stopping or self._broken:
            return
        if None in self._workers:
            self._workers = [w for w in self._workers if w is not None]
        live = self._live()
        target = self.dispatcher.workers
        if len(live) > target:
            live.sort(key=lambda w: (w.held(), w.ready))  # idle (and still starting) ones first
            for w in live[: len(live) - target]:
                self._retire(w, recycled=False)
            return
        want = target
        if self._min is not None:
            # On demand: the workers needed now, the waiting jobs that no idle one will take.
            idle = sum(1 for w in live if not w.held())
            waiting = self.dispatcher.waiting_locked()  # a hint (GIL: a consistent int)
            want = min(target, max(self._min, len(live) + max(0, waiting - idle)))
        for _ in range(want - len(live)):
            self._workers.append(self._spawn())
        if self._idle is not None:
            now = time.monotonic()
            extra = len(live) - self._min if self._min is not None else 0
            for w in live:
                if extra <= 0:
                    break
                if w.ready and not w.held() and now - w.idle_since >= self._idle:
                    self._retire(w, recycled=False)
                    extra -= 1

    def _after_job(self, w: _Worker) -> None:
        """A job of ``w`` ended: recycle it if it has run its share or grew too big."""
        if w.retiring:
            return
        if (self._memory is not None and w.rss is not None and w.rss.value > self._memory) or (
            self._budget is not None and w.sent >= self._budget and not w.held()
        ):
            self._retire(w, recycled=True)

    def _manage(self) -> None:
        mark_internal()  # jobs it settles run their done-callbacks on the callback thread
        try:
            self._manage_loop()
        except BaseException as exc:
            self.dispatcher.broken(exc)
            raise

    def _manage_loop(self) -> None:
        # One poll object for the manager's whole life, told only of the changes:
        # multiprocessing.connection.wait() builds a selector and registers every
        # pipe on each call, which was most of the manager's CPU per result. (Safe
        # with fd numbers reused by a new worker: poll() asks about numbers on each
        # call; an epoll object would not be.)
        poller = select.poll()
        registered: set[int] = set()
        while True:
            deadlines = [
                w.deadline for w in self._workers if w is not None and w.job is not None and w.deadline is not None
            ]
            if self._idle is not None and not self._broken:  # the next idle worker above the minimum to retire
                live = self._live()
                if len(live) > (self._min or 0):
                    deadlines += [w.idle_since + self._idle for w in live if w.ready and not w.held()]
            delay = self._coalesce()
            if delay and deadlines:
                delay = min(delay, max(0.0, min(deadlines) - time.monotonic()))  # not past a known deadline
            if delay:
                time.sleep(delay)  # the GIL let go: submitters and the callback thread run meanwhile
            timeout = None
            if deadlines:
                timeout = math.ceil(max(0.0, min(deadlines) - time.monotonic()) * 1000)  # ms, never early
            want = {self._wake_r}
            for w in self._workers:
                if w is None:
                    continue
                if w.held() or not w.ready:
                    want.add(w.inbox.fd)
                want.add(w.sentinel)
            for fd in registered - want:
                poller.unregister(fd)
            for fd in want - registered:
                poller.register(fd, select.POLLIN)
            registered = want
            ready = {fd for fd, _ in poller.poll(timeout)}
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                with self._lock:
                    self._wake_pending = False
            for i, w in enumerate(self._workers):
                if w is None:
                    continue
                if w.inbox.fd in ready:
                    if not w.ready:
                        self._hello(w)
                    else:
                        self._drain(w)
                if w.sentinel in ready:
                    self._replace(i, w, died=True)
            self._enforce()
            if self._stopping:
                return
            self._reconcile()
            self._dispatch()

    def _coalesce(self) -> float:
        """How long the manager may let results gather before it reads them (seconds;
        0: read them now).

        While every worker has its next jobs at hand (``COALESCE_AHEAD`` or more sent
        ahead), reading a result later idles nobody; reading several in one round
        costs one wake-up, one poll and one pass over the workers instead of one each,
        and a worker's write of its result wakes no one (measured: README, "Results
        read in rounds"). Half the work of the shortest backlog but its first
        ``COALESCE_AHEAD - 1`` jobs, by the workers' own recent run times, and at most
        ``COALESCE_MOST``. The manager sleeps through it: a result, but also a cancel
        that kills a running job, a crash, ``resize`` or ``stop`` waits that much more
        to be seen."""
        shortest: int | None = None
        for w in self._workers:
            if w is None or w.retiring:
                continue
            if not w.ready or w.job is None or len(w.backlog) < COALESCE_AHEAD:
                return 0.0  # starting, idle, or about to be: it needs the manager now
            if shortest is None or len(w.backlog) < shortest:
                shortest = len(w.backlog)
        if shortest is None:
            return 0.0  # no worker
        return min(COALESCE_MOST, (shortest - COALESCE_AHEAD + 1) * self._backlog.run_average() / 2)

    def _hello(self, w: _Worker) -> None:
        try:
            messages = w.inbox.read()
        except (EOFError, OSError):
            return  # died while starting: its sentinel reports it
        if messages and messages[0].startswith(INIT_FAILED):
            exc = decode(messages[0][len(INIT_FAILED) :]).value
            if not self._broken:  # every worker's initializer fails alike: the first one tells
                self._broken = True
                self.dispatcher.initializer_failed(exc)
        elif messages:
            w.ready = messages[0] == READY  # it sends nothing else until it has a job
            w.idle_since = time.monotonic()
            self._start_failures = 0

    def _drain(self, w: _Worker) -> None:
        """Handle every message the worker has sent so far."""
        try:
            messages = w.inbox.read()
        except (EOFError, OSError):
            return  # it died mid-message: its sentinel reports the crash
        for data in messages:
            self._receive(w, data)

    def _receive(self, w: _Worker, data: bytes) -> None:
        msg = decode(data)
        if msg.outcome == SKIPPED or msg.outcome == LATE:  # the worker skipped a job of its backlog
            for k, (skipped, slot, size) in enumerate(w.backlog):
                if skipped.job_id == msg.job_id:
                    del w.backlog[k]
                    w.backlog_bytes -= size  # a revoked job was requeued when revoked
                    w.free.append(slot)
                    w.states[slot] = FREE
                    w.sent -= 1  # never begun: not one of its max_tasks_per_worker
                    break
            self._advance(w)
            if not w.held():
                w.idle_since = time.monotonic()
                self._after_job(w)
            return
        if w.job is None or w.job.job_id != msg.job_id:
            self._advance(w)  # it ran a backlog job faster than we looked: that one is running
        job = w.job
        if job is None or job.job_id != msg.job_id:
            return  # from an attempt settled and stopped meanwhile
        # The run time as the worker measured it: the time the result took to be read
        # (the manager busy, or letting results gather) is no part of the job's work.
        self._backlog.observe(w.ends[w.slot] - w.starts[w.slot])
        w.job = None
        w.deadline = None
        w.states[w.slot] = FREE
        w.free.append(w.slot)
        # This job ends before the next one of the backlog counts as running, so that
        # busy never exceeds workers, not even between the two.
        self.dispatcher.finish(job, msg.attempt, msg.outcome, msg.value)
        self._advance(w)
        if not w.held():
            w.idle_since = time.monotonic()
        self._after_job(w)

    def _advance(self, w: _Worker) -> None:
        """The worker's job ended: the first job of its backlog is running now."""
        while w.job is None and w.backlog:
            job, slot, size = w.backlog[0]
            with w.lock:
                state = w.states[slot]
                if state == PENDING and job.status is not _QUEUED:
                    w.states[slot] = state = CANCELLED  # cancelled before the worker got to it
            if state in (CANCELLED, REVOKED):
                return  # the worker will skip it and say so
            # STARTED: the worker wrote when. PENDING: it is between the two jobs.
            started_at = w.starts[slot] if state == STARTED else time.monotonic()
            with self._lock:
                started = self.dispatcher.started_locked(job, started_at)
            if not started:
                # Cancelled since the look above: by a cancel of the jobs not begun,
                # which claimed the slot (CANCELLED) unless the worker had begun it, or
                # by any other cancel, which leaves the slot to us. Not begun: it stays
                # first in the backlog until the worker says it skipped it.
                with w.lock:
                    state = w.states[slot]
                    if state == PENDING:
                        w.states[slot] = state = CANCELLED
                if state != STARTED:
                    return
                # Begun: it runs as w.job with a status that is no longer RUNNING, so
                # _enforce stops it for real (the pool's own cancel stops running jobs).
            w.backlog.popleft()
            w.backlog_bytes -= size
            w.job, w.attempt, w.slot = job, job.attempt, slot
            w.deadline = None if (job.timeout is None or not started) else started_at + job.timeout

    def _replace(self, i: int, w: _Worker, *, died: bool) -> None:
        """Reap worker ``w``, number ``i`` (killing it unless it died), and put a new
        one in its place."""
        self._workers[i] = None  # until the new one exists
        if not died:
            w.process.kill()
        w.process.join()
        for data in w.inbox.read_left():  # what it sent before it ended still counts
            self._receive(w, data)
        w.conn.close()
        job, attempt = w.job, w.attempt
        if died and job is not None and w.states[w.slot] == PENDING:
            # It died before it began this job (between two jobs, say): the job was
            # counted as running, but never ran. Waiting again, its attempt unused.
            with self._lock:
                self.dispatcher.unstart_locked(job, attempt)
        elif died and job is not None:
            exitcode = w.process.exitcode
            sig, cause = describe_exit(exitcode)
            err = WorkerCrashed(
                f"worker process {w.process.pid} died running job {job.job_id} "
                f"(attempt {attempt}): {cause} (exit code {exitcode})",
                job_id=job.job_id,
                exitcode=exitcode,
                signal_name=sig,
                cause=cause,
            )
            self.dispatcher.finish(job, attempt, CRASH, err)
        # Never begun there: back on the heap, in their order (revoked ones already are).
        self._give_back([job for job, slot, _ in w.backlog if w.states[slot] == PENDING])
        if died and not w.ready and not self._broken and not w.retiring:
            self._start_failures += 1
            if self._start_failures >= START_FAILURES_LIMIT:
                sig, cause = describe_exit(w.process.exitcode)
                raise RuntimeError(
                    f"{self._start_failures} worker processes in a row died before they could take a "
                    f"job (last exit code {w.process.exitcode}: {cause}); is the start method "
                    f"{self.start_method!r} usable here, and does the main module import cleanly?"
                )
        w.process.close()
        # No replacement while stopping, nor for a retiring worker; on demand (above
        # min_workers) _reconcile starts one when a job needs it.
        if (
            not self._stopping
            and not self._broken
            and not w.retiring
            and self._min is None
            and len(self._live()) < self.dispatcher.workers
        ):
            self._workers[i] = self._spawn()

    def _enforce(self) -> None:
        """Kill the workers whose job was cancelled or ran past its deadline; mark
        cancelled backlog jobs so that their worker skips them."""
        now = time.monotonic()
        for i, w in enumerate(self._workers):
            if w is None or w.job is None:
                continue
            if not self.dispatcher.is_current(w.job, w.attempt):
                self._stop_current(i, w, w.job, timed_out=False)  # settled elsewhere (cancel)
            elif w.deadline is not None and now >= w.deadline:
                self._stop_current(i, w, w.job, timed_out=True)
        if self._backlog_cancels:  # a waiting job was cancelled: it may sit in a backlog
            self._backlog_cancels = False
            for w in self._workers:
                if w is not None and w.backlog:
                    with w.lock:
                        for queued, slot, _ in w.backlog:
                            if queued.status is not _QUEUED and w.states[slot] == PENDING:
                                w.states[slot] = CANCELLED

    def _stop_current(self, i: int, w: _Worker, job: Job[Any], *, timed_out: bool) -> None:
        """Stop worker ``w`` (number ``i``), which runs ``job``."""
        attempt = w.attempt
        with w.lock:
            if any(w.states[slot] == STARTED for _, slot, _ in w.backlog):
                return  # it has moved on: the job ended and its result is on the way
            revoked = self._revoke_locked(w, len(w.backlog))  # from now on it starts nothing more
        self._give_back(revoked)
        if timed_out:
            w.job = None  # its end is the timeout, not the crash of the worker we kill
        self._replace(i, w, died=False)
        if timed_out:
            self.dispatcher.timed_out(job, attempt, preempted=False)

    @staticmethod
    def _revoke_locked(w: _Worker, n: int) -> list[Job[Any]]:
        """Take back up to ``n`` jobs from the end of ``w``'s backlog that it has
        not begun (``w.lock`` held); it will skip them."""
        revoked: list[Job[Any]] = []
        for job, slot, _ in reversed(w.backlog):
            if len(revoked) >= n:
                break
            if w.states[slot] == PENDING:
                w.states[slot] = REVOKED
                revoked.append(job)
        revoked.reverse()
        return revoked

    def _give_back(self, revoked: list[Job[Any]]) -> None:
        if revoked:
            with self._lock:
                for job in revoked:
                    self.dispatcher.give_back_locked(job)

    def _steal(self) -> bool:
        """A worker is idle and no job waits on the queue: take back the last job not
        yet begun of the longest backlog, so that no job waits behind a long one
        while a worker could run it."""
        # Not begun, nor already taken back (a revoked job stays listed until the worker skips it).
        waiting = [
            [(w, e) for e in w.backlog if w.states[e[1]] == PENDING] for w in self._workers if w is not None and w.ready
        ]
        picked = Backlog.take_back(waiting, 1)
        if not picked:
            return False
        victim, (job, slot, _) = picked[0]
        with victim.lock:
            if victim.states[slot] != PENDING:
                return False  # it began meanwhile
            victim.states[slot] = REVOKED
        self._give_back([job])
        self._steals += 1
        return True

    def _dispatch(self) -> None:
        policy, dispatcher = self._backlog, self.dispatcher
        budget = self._budget
        for w in self._workers:
            if w is None or not w.ready or w.retiring or w.held() >= PREFETCH:
                continue
            if budget is not None and w.sent >= budget:
                continue  # it retires once the jobs it holds end
            idle = w.job is None and not w.backlog
            waiting = dispatcher.waiting_locked()  # a hint, read without the lock (GIL: consistent ints)
            if not idle and (not waiting or not policy.wants_more(len(w.backlog))):
                continue  # busy, and nothing to add to its backlog now: no lock taken
            batch = []
            if idle and not waiting and self._steal():
                pass  # a job is back on the queue for this idle worker
            with self._lock:
                if w.job is None and not w.backlog:
                    job = dispatcher.take_locked()
                    if job is None:
                        return
                    w.job, w.attempt, w.slot = job, job.attempt, w.free.pop()
                    w.states[w.slot] = PENDING
                    w.sent += 1
                    w.deadline = None if job.timeout is None else job.started_at + job.timeout
                    batch.append((job.job_id, job.attempt, job.timeout, job.payload, w.slot))
                # A share of a deep queue (see Backlog); a busy worker's backlog is
                # refilled once half of it is gone: one message for several jobs.
                share = 0
                if batch or policy.wants_more(len(w.backlog)):
                    share = policy.share(w.held(), dispatcher.waiting_locked(), dispatcher.workers)
                if budget is not None:
                    share = min(share, budget - w.sent)  # never send ahead what it may not run
                if self._memory is not None:
                    share = 0  # its RSS is known only after each job: one job at a time
                for _ in range(share):
                    used = w.backlog_bytes

                    def fits(j: Job[Any], used: int = used) -> bool:
                        return policy.fits(payload_size(j.payload), used)

                    nxt = dispatcher.prefetch_locked(fits)
                    if nxt is None:
                        break
                    slot = w.free.pop()
                    # PENDING under the lock, with where it waits: a claim (which holds
                    # the lock) never finds the slot of a job sent ahead still FREE
                    w.states[slot] = PENDING
                    nxt.backend_slot = (w.lock.raw, w.states, slot)
                    size = payload_size(nxt.payload)
                    w.backlog.append((nxt, slot, size))
                    w.backlog_bytes += size
                    w.sent += 1
                    batch.append((nxt.job_id, nxt.attempt + 1, nxt.timeout, nxt.payload, slot))
            if not batch:
                continue
            try:
                w.conn.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:
                pass  # the worker died: its sentinel reports the crash on the next round

    def stop(self, deadline: float | None) -> int:
        # A second call finishes what an interrupted one began (Ctrl-C pressed again
        # during shutdown, then the exit hook's shutdown): each worker is closed and
        # forgotten once, and so is the wake-up pipe.
        with self._lock:
            self._stopping = True
            if self._pipe_closed:
                self._close_wake_pipe()  # what an interrupt left open
                return 0
            self.wake_locked()
        grace = 5.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if self._manager is not threading.current_thread():
            self._manager.join(grace + 5.0)
        for w in self._workers:
            if w is None:
                continue
            try:
                w.conn.send_bytes(_STOP)
            except OSError:
                pass
        for i, w in enumerate(self._workers):
            if w is None:
                continue
            w.process.join(max(0.0, grace) if deadline is not None else 5.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            self._workers[i] = None  # reaped: from here on an interrupt leaks nothing that lives
            w.conn.close()
            w.process.close()
        with self._lock:
            self._pipe_closed = True
        self._close_wake_pipe()
        return 0

    def _close_wake_pipe(self) -> None:
        """Close the wake-up pipe's two ends, each once (-1 once closed)."""
        ends, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in ends:
            if fd >= 0:
                os.close(fd)
