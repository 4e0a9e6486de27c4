"""The "dask" backend: plain callables on a Dask distributed cluster, at most W at once.

Data flow::

    submit() ─cloudpickle (fn, args)─▶ Pool heap ─(call_soon_threadsafe: _pump)─▶ the pool's loop thread
                                          ▲                                        │ take ≤ W jobs (refill in
                                          │ _requeue (retry back-off),             │ batches once every thread
                                          │ _unprefetch (packed jobs that          │ has work), each the head of
                                          │ never began: task died, job            │ a task; with more jobs waiting
                                          │ taken back for an idle thread)         │ than threads, up to 15 more
                                          │                                        │ packed behind it (still QUEUED);
                                          │                                        │ per priority one client.map(
                                          │                                        │   _run_pack, key=<pool>-<job>-
                                          │                                        │   <attempt>, priority=p)
                                          │                                        ▼
                                          │                Dask scheduler ──▶ a worker thread: _run_pack runs the
                                          │                                   jobs in order (each with its own
                                          │                                   current_context()), skips those
                                          │                                   with a tombstone, and after each
                                          │                                   pushes one event: its outcome
                                          │                                   (≤ 8 KiB) and which job began next
                                          │                                   (with crash recovery: written to
                                          │                                   the scheduler before that job begins)
                                          │                                        │
                               _finish_attempt() ◀── _on_pushed(): that job is settled, the next one is
                               _start_prefetched()    marked running (its clock from when it began);
                                                     _track(): Dask reports the task ended: what never
                                                     began goes back to the queue, a large outcome is
                                                     fetched in one batched gather
    Timer thread ── deadline ──▶ JobTimeout now (per job, from when it began); the worker knows the
                                 deadline too; the task is *abandoned* (stats().abandoned) until the
                                 job returns, and the jobs behind it are taken back
    job.cancel() ─▶ _stop_running ─▶ client.run(_stop_on_worker, [(task, job)]) on every worker: the
                                      job's context is cancelled, or a tombstone keeps it from ever
                                      beginning (for a packed job, cancel() returns once every worker
                                      holds it)

The bounded queue, priorities, admission, retries, statistics and shutdown are the
shared client-side machinery of ``_base.Pool``; this module only moves at most
``workers`` running jobs at a time from the heap to the cluster and settles each
job as its task reports it. ``workers`` is how many jobs are running on the cluster
at once, each the current job of one task, running or waiting there for a thread
(``stats().busy`` counts them); on a cluster given by address it defaults to 4 per
thread of the cluster, so that a thread that finishes a task finds the next one on
its worker instead of waiting for the pool's round trip.

What a task costs the scheduler is what a task of ``client.map`` costs (about five
messages); the pool adds one small event per job, and shares the task among up to
``_PACK`` jobs when more jobs wait than the cluster has threads (a share of the
queue per thread). The packed jobs are the pool's *prefetch*: queued in every sense
(counted as waiting, cancellable as waiting, their clock not started) until the
worker reports that they began, which it does in the event of the job before. A
cancelled one gets a tombstone on every worker before ``cancel()`` returns, so it
never begins (unless its worker began it a moment before the tombstone arrived:
then its context is cancelled, as for a running job). If the task dies, or the job
before a packed one is timed out or cancelled, what never began goes back to the
queue without using an attempt; when the queue is empty and a cluster thread is
idle, the last not-yet-begun jobs of the fullest tasks are taken back (each worker
answers exactly whether they began), so that no job waits behind a long one while a
thread could run it. Only jobs of the head's priority are packed with it.

Where the pool recovers from crashes (``survives_crashes``: worker processes under a
nanny), a task writes each event on its worker's connection to the scheduler, and waits
for that, before it begins its next job (Dask would batch it for up to 2 ms): if that
job kills the worker process, the scheduler has the event before it learns of the death,
and passes both on in that order, so the pool charges the crash to the job that was
running, never to the one that ended just before it. A job's end and its successor's
begin are counted in one round of the pool's lock, so ``busy`` never exceeds ``workers``.

Dask runs its side of the work on the pool's own event loop thread (an asynchronous
``Client``), so no Dask call ever blocks a submitter, and no thread is made per job.

Dask cannot stop a task that is already running on a worker. So a timed-out or
cancelled job ends for its caller at once (``JobTimeout`` / cancelled), the job's
``current_context()`` is cancelled — it carries the deadline, and a cancel is sent to
the workers — and its thread is counted in ``stats().abandoned`` until the job returns. A job that never looks at its context keeps its worker thread until it
returns, as on the thread backend.

With no ``address`` the pool starts a ``LocalCluster`` on 127.0.0.1 in a child
process that it owns (threads by default, worker processes with ``processes=True``)
and closes it at shutdown; a cluster given by ``address`` is never closed. A child
process, because a scheduler in this one would start distributed's process-wide
"Dask-Offload" thread, which never ends, and share this program's GIL; and a job
that crashes it ends the cluster, not the program.

Coroutine functions are refused (``InvalidCallable``): Dask would run them on the
worker's event loop, where one that blocks stalls the worker's heartbeats and
transfers. Submit a plain function that calls ``asyncio.run()``, or use "asyncio".
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import json
import os
import pickle
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import cloudpickle
from distributed import Client
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from . import _base
from ._base import CRASH, ERROR, OK, Job, Pool
from ._callbacks import mark_internal
from ._context import JobContext, _current
from ._loop import run_private_loop
from ._process_worker import _dump_failure, dump_result
from ._timer import DeadlineWatch
from .exceptions import InvalidArgument, InvalidCallable, PoolBroken, PoolError, RemoteTraceback, WorkerCrashed

__all__ = ["DaskPool"]

_START_TIMEOUT = 60.0  # seconds for the pool's own LocalCluster process to serve
_STOP_WAIT = 5.0  # shutdown(timeout=None): seconds that abandoned tasks get to end
_CLOSE_TIMEOUT = 5.0  # seconds for the client to say goodbye to the scheduler
_TOMBSTONE_TTL = 600.0  # seconds a worker remembers a cancel for a task it has not started
# Outcomes up to this size ride to the pool as a scheduler event (see _run_pack); the
# scheduler keeps the latest 1000 events of a topic, so this bounds what it holds per pool.
_PUSH_LIMIT = 8 * 1024
# Seconds a task waits for a pushed event to be written before the next job begins (flush).
_FLUSH_TIMEOUT = 10.0
# Default ``workers`` on a cluster given by address: jobs on the cluster per thread of it.
_IN_FLIGHT_PER_THREAD = 4

# Outcome marker of a job that did not run its function (see _job_outcome).
_LATE = "late"  # started after its deadline

# A task carries one job, or, when more jobs wait than the cluster has threads, up to
# _PACK of them (the job that left running, and more behind it) with at most _PACK_BYTES
# of payload behind the first: what a task costs the scheduler is shared among them.
_PACK = 16
_PACK_BYTES = 64 * 1024


# ------------------------------------------------------------------ worker side
#
# These run inside the Dask workers (poolbench must be importable there). Every
# worker of a process shares them; task keys are unique per pool and attempt.

_registry_lock = threading.Lock()
_running: dict[tuple[str, int], JobContext] = {}  # (task key, job id) -> context of a job running here
_begun: dict[str, set[int]] = {}  # task key -> ids of its jobs begun here, while the task runs
# Recently ended tasks -> ids of their jobs begun here: a cancel or take-back that arrives
# after its task ended must not leave a tombstone that claims the job never began.
_ended: collections.OrderedDict[str, set[int]] = collections.OrderedDict()
_ENDED_KEPT = 4096
_cancels: collections.OrderedDict[tuple[str, int], float] = collections.OrderedDict()  # tombstones


@functools.lru_cache(maxsize=1)
def _clock_id() -> str | None:
    """Identifies this machine's ``time.monotonic()`` clock (Linux: the boot id),
    so that a worker on the same machine uses the pool's deadline exactly."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _run_pack(
    key: str,
    entries: list[tuple],
    *,
    clock: str | None,
    topic: str | None = None,
    flush: bool = False,
) -> tuple[dict[int, bytes], list[int]]:
    """Run the jobs of one task in a Dask worker, in order. ``entries`` holds
    ``(job_id, attempt, deadline, remaining, timeout, payload)``: the first job's
    clock started when the pool sent it (``deadline``, or ``remaining`` on another
    machine); each later one's starts when it begins here (``timeout``).

    Before each job begins, its tombstone is looked up (the pool cancelled it or
    took it back): such a job is skipped. When a job ends, the next one to begin is
    chosen, and one event on ``topic`` tells the pool both: ``[key, job_id,
    started, outcome, next_job_id, next_started]`` (times only on the pool's own
    clock), ahead of Dask's report that the task finished. An outcome larger than
    ``_PUSH_LIMIT`` is returned instead, and the task stops there (the jobs after
    it never begin: the pool puts them back in its queue). Returns (outcomes not
    pushed, ids of the jobs begun).

    With ``flush`` (the pool recovers from crashed workers) each event has left this
    process, written on the worker's connection to the scheduler, before the next
    job begins: if that job kills the process (os._exit, a segfault, the OOM killer),
    the scheduler has the event before it learns of the death, so the pool knows
    which job was running (see _push). Without it, the event waits up to 2 ms in the
    worker's batched stream: a crash then ends the cluster anyway (threads of the
    pool's own LocalCluster), or crash recovery does not apply."""
    same_clock = clock is not None and clock == _clock_id()
    worker = None
    if topic is not None:
        try:
            from distributed import get_worker

            worker = get_worker()
        except Exception:  # noqa: BLE001 - not in a worker, say: every outcome is returned
            worker = None
    kept: dict[int, bytes] = {}
    begun: set[int] = set()
    with _registry_lock:
        _begun[key] = begun
    try:
        nxt = _begin_next(key, entries, 0, begun, same_clock)
        while nxt is not None:
            i, ctx, started = nxt
            job_id = entries[i][0]
            out = _job_outcome(key, entries[i], ctx)
            if worker is not None and len(out) > _PUSH_LIMIT:
                kept[job_id] = out
                break  # fetched when the task ends: begin nothing more
            nxt = _begin_next(key, entries, i + 1, begun, same_clock)
            if worker is None:
                kept[job_id] = out
                continue
            try:
                _push(
                    worker,
                    topic,
                    [
                        key,
                        job_id,
                        started if same_clock else None,
                        out,
                        None if nxt is None else entries[nxt[0]][0],
                        nxt[2] if nxt is not None and same_clock else None,
                    ],
                    flush,
                )
            except Exception:  # noqa: BLE001 - the pool then fetches it with the task
                kept[job_id] = out
                if nxt is not None:  # ... so nothing after it may begin unannounced
                    _unbegin(key, entries[nxt[0]][0], begun)
                break
    finally:
        with _registry_lock:
            _begun.pop(key, None)
            _ended[key] = begun
            while len(_ended) > _ENDED_KEPT:
                _ended.popitem(last=False)
    return kept, sorted(begun)


def _push(worker: Any, topic: str, msg: list, flush: bool) -> None:
    """Send one event of a task to the pool (through the scheduler). With ``flush``,
    return only once it is written on the worker's stream to the scheduler: if the
    worker process dies after that, the scheduler still reads the event (it reads a
    worker's stream to its end before removing the worker) and passes it on to the
    pool before the task's KilledWorker, on the same stream to the client. Raises if
    it was not sent, and then never will be: the caller keeps the outcome for the
    task's result and begins nothing more."""
    if not flush or getattr(worker, "thread_id", None) == threading.get_ident():
        worker.log_event(topic, msg)  # queued on the worker's batched stream (sent within 2 ms)
        return
    sent: concurrent.futures.Future = concurrent.futures.Future()
    worker.loop.add_callback(_write_event, worker, {"op": "log-event", "topic": topic, "msg": msg}, sent)
    try:
        sent.result(_FLUSH_TIMEOUT)
    except concurrent.futures.TimeoutError:
        if sent.cancel():  # the worker's loop never got to it: it will not be sent
            raise
        # It got to it: the event is in the stream's buffer, ahead of what follows, and
        # the kernel has not taken it yet (a stalled scheduler): go on.


async def _write_event(worker: Any, msg: dict, sent: concurrent.futures.Future) -> None:
    """(the worker's event loop) Write ``msg`` straight on the worker's stream to the
    scheduler, as a batch of one, bypassing the batching interval; then wait until the
    stream has handed it to the kernel. A message's frames enter the stream's buffer in
    one synchronous step, so this cannot interleave with the batched stream's own
    writes, which go on the same connection."""
    if not sent.set_running_or_notify_cancel():
        return  # the job's thread gave up on it
    try:
        batched = worker.batched_stream
        comm = batched.comm
        if comm is None or comm.closed():
            raise ConnectionError("the worker's stream to the scheduler is closed")
        await comm.write([msg], serializers=batched.serializers, on_error="raise")
        stream = getattr(comm, "stream", None)  # TCP: what the kernel has not taken yet
        if stream is not None and stream.writing():
            await stream.write(b"")
    except BaseException as exc:  # noqa: BLE001 - reported to the job's thread
        sent.set_exception(exc)
    else:
        sent.set_result(None)


def _begin_next(
    key: str,
    entries: list[tuple],
    i: int,
    begun: set[int],
    same_clock: bool,
) -> tuple[int, JobContext, float] | None:
    """Begin the first job from ``entries[i]`` on that has no tombstone: register
    its context (a cancel that comes later reaches it). None if none is left."""
    with _registry_lock:
        while i < len(entries):
            job_id, attempt, deadline, remaining, timeout, _ = entries[i]
            if _cancels.pop((key, job_id), None) is not None:
                i += 1
                continue
            now = time.monotonic()
            if deadline is None:
                deadline = None if timeout is None else now + timeout
            elif not same_clock:
                deadline = now + remaining  # another machine: another clock
            ctx = JobContext(job_id, attempt, deadline)
            _running[(key, job_id)] = ctx
            begun.add(job_id)
            return i, ctx, now
    return None


def _unbegin(key: str, job_id: int, begun: set[int]) -> None:
    with _registry_lock:
        _running.pop((key, job_id), None)
        begun.discard(job_id)


def _job_outcome(key: str, entry: tuple, ctx: JobContext) -> bytes:
    """Run one begun job; its pickled outcome ``(job_id, attempt, ok, value,
    traceback_text)``, as the process backend sends it."""
    job_id, attempt, payload = entry[0], entry[1], entry[5]
    try:
        if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
            return pickle.dumps((job_id, attempt, None, _LATE, None))
        token = _current.set(ctx)
        fn = args = value = None
        try:
            fn, args = cloudpickle.loads(payload)
            value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - goes to the job's caller, never kills the worker
            return _dump_failure(job_id, attempt, exc)
        finally:
            _current.reset(token)
            del fn, args
        return dump_result(job_id, attempt, value)
    finally:
        with _registry_lock:
            _running.pop((key, job_id), None)


def _stop_on_worker(items: list, revoke: bool) -> list[tuple[str, int]]:
    """Run by ``client.run`` on every worker, on its event loop: for each ``(task
    key, job id)``, leave a tombstone so that the job never begins here, unless it
    began here already; a job running here has its context cancelled (unless
    ``revoke``: the pool only wants it back if it has not begun). Returns the items
    that began here (tombstones are exact: the task looks them up under the same lock)."""
    now = time.monotonic()
    began: list[tuple[str, int]] = []
    cancel: list[JobContext] = []
    with _registry_lock:
        for key, job_id in items:
            ctx = _running.get((key, job_id))
            seen = _begun.get(key)
            if seen is None:
                seen = _ended.get(key)
            if ctx is not None or (seen is not None and job_id in seen):
                began.append((key, job_id))
                if ctx is not None and not revoke:
                    cancel.append(ctx)
                continue
            _cancels[(key, job_id)] = now
        while _cancels and next(iter(_cancels.values())) < now - _TOMBSTONE_TTL:
            _cancels.popitem(last=False)
    for ctx in cancel:
        ctx._cancel()
    return began


def _forget_topic(topic: str, dask_scheduler: Any = None) -> None:
    """On the scheduler: drop the events it keeps for ``topic`` (a pool's pushed outcomes)."""
    broker = getattr(dask_scheduler, "_broker", None)
    if broker is not None:
        broker.truncate(topic)


# ------------------------------------------------------------ the pool's cluster


def _serve_local_cluster(workers: int, processes: bool, address_fd: int) -> None:
    """Main of the child process that holds a pool's own LocalCluster: write its
    address to ``address_fd``, serve until stdin closes (the pool shut down, or died)."""
    import dask
    from distributed import LocalCluster

    # The pool's Retry rules govern crashed attempts, not Dask's own re-runs.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    if processes:
        layout = {"n_workers": workers, "threads_per_worker": 1}
    else:
        layout = {"n_workers": 1, "threads_per_worker": workers, "protocol": "tcp"}
    cluster = LocalCluster(
        host="127.0.0.1",
        dashboard_address=None,  # no dashboard; its health/metrics server on a free loopback port:
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        processes=processes,
        **layout,
    )
    try:
        with os.fdopen(address_fd, "w") as out:
            out.write(cluster.scheduler_address + "\n")
        sys.stdin.buffer.read()
    finally:
        try:
            cluster.close(timeout=2)
        finally:
            os._exit(0)  # threads still running abandoned tasks must not hold the exit


class _LocalClusterProcess:
    """A LocalCluster on 127.0.0.1 in a child process. It runs in its own session (a
    Ctrl-C meant for the program does not reach it), ends when its stdin closes, and
    shares the program's stdout and stderr (what jobs print shows up there). Its
    address comes back on a pipe of its own."""

    def __init__(self, workers: int, processes: bool, timeout: float = _START_TIMEOUT) -> None:
        code = (
            "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
            "from pools.dask import _serve_local_cluster; _serve_local_cluster(*json.loads(sys.argv[2]))"
        )
        read_end, write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, json.dumps(sys.path), json.dumps([workers, processes, write_end])],
                stdin=subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the child holds it now: EOF here if it dies
        try:
            self.address = self._read_address(read_end, timeout)
        except BaseException:
            self.close(0, kill=True)
            raise
        finally:
            os.close(read_end)

    def _read_address(self, fd: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise PoolBroken(f"the pool's LocalCluster did not start within {timeout}s")
            chunk = os.read(fd, 4096)
            if not chunk:
                code = self.proc.wait()
                raise PoolBroken(
                    f"the pool's LocalCluster process exited with code {code} before serving (see its output)"
                )
            data += chunk
        return data.decode().strip()

    def close(self, timeout: float = 10.0, *, kill: bool = False) -> None:
        """Close the cluster and reap its process; ``kill`` does not wait for it to
        close gracefully (tasks stuck in its worker threads would hold that up)."""
        if kill:
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # worker processes of a nanny exit with it
            self.proc.wait()


# ------------------------------------------------------------------------ pool


# States of a job's place in a task (an _Attempt).
_PACKED = "packed"  # sent in a task behind others, not begun: its job is still queued (prefetched)
_BEGUN = "begun"  # running there: the first job of a task from its dispatch, a later one from its start
_CLOSED = "closed"  # ended, skipped, or taken back to the queue


class _Attempt:
    """One job's place in a task on the cluster (loop thread; fields under the pool lock)."""

    __slots__ = ("abandoned", "attempt", "deadline", "index", "job", "late", "revoking", "state", "task")

    def __init__(self, job: Job, attempt: int, task: _Task, state: str, deadline: float | None) -> None:
        self.job = job
        self.attempt = attempt  # the attempt it is, or will be once it begins
        self.task = task
        self.index = len(task.slots)
        self.state = state
        self.deadline = deadline
        self.abandoned = False  # settled from outside while it may still run there
        self.revoking = False  # a take-back is on its way to the workers
        self.late = False  # began after its job was cancelled (or failed): its context must be cancelled

    @property
    def key(self) -> str:
        return self.task.key


class _Task:
    """One Dask task: the jobs it runs, in order (the first is running from its dispatch)."""

    __slots__ = ("by_id", "cursor", "ended", "future", "key", "priority", "slots")

    def __init__(self, key: str, priority: int) -> None:
        self.key = key
        self.priority = priority
        self.slots: list[_Attempt] = []
        self.by_id: dict[int, _Attempt] = {}
        self.cursor = 0  # every slot before it is closed
        self.future: Any = None  # the Dask future, once submitted
        self.ended = False  # Dask reported the task finished (or it never ran)

    def add(self, job: Job, attempt: int, state: str, deadline: float | None) -> _Attempt:
        slot = _Attempt(job, attempt, self, state, deadline)
        self.slots.append(slot)
        self.by_id[job.job_id] = slot
        job.backend_slot = slot
        return slot


class DaskPool(Pool):
    """Jobs on a Dask cluster: ``address="tcp://host:8786"`` uses an existing one
    (never closed by the pool; ``workers``, the jobs on the cluster at once, defaults to
    4 per thread of it), no address starts a LocalCluster on 127.0.0.1 in a child
    process owned by the pool (``processes=True`` for one worker process per worker,
    else one worker with ``workers`` threads). Callables and arguments cross by
    cloudpickle."""

    backend = "dask"
    runs = "callables"
    stops_running_jobs = False  # a running task cannot be stopped: its context is cancelled
    carries_contextvars = False
    #: a crash is reported by Dask as KilledWorker, without the worker's exit code or signal
    reports_exit_status = False

    def __init__(
        self,
        *,
        workers: int | None = None,
        queue_size: int = 1000,
        overflow: str = "block",
        name: str | None = None,
        address: str | None = None,
        processes: bool | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        super().__init__(workers=workers, queue_size=queue_size, overflow=overflow, name=name)
        # Deadlines of running jobs, watched as the thread and asyncio backends do.
        self._deadlines = DeadlineWatch(self._timer, self._on_deadline)
        if address is not None and (not isinstance(address, str) or not address):
            raise InvalidArgument(
                f"address must be a scheduler address like 'tcp://host:8786', or None; got {address!r}"
            )
        if processes is not None and not isinstance(processes, bool):
            raise InvalidArgument(f"processes must be True or False, got {processes!r}")
        if address is not None and processes is not None:
            raise InvalidArgument(
                "processes= shapes the LocalCluster that the pool starts when address is None; "
                f"the cluster at {address!r} has its own workers"
            )
        _base._check_number("connect_timeout", connect_timeout, minimum=0, inclusive=False, none_ok=False)
        self.address = address
        self.processes = bool(processes)
        self.connect_timeout = connect_timeout
        self._workers_from_cluster = workers is None and address is not None
        # Of a cluster given by address: learnt when connecting.
        self._crash_note: str | None = f"the pool never reached the cluster at {address}, so its workers are unknown"

    @property
    def crash_note(self) -> str | None:
        """Why a crashing job cannot be recovered from on this pool's cluster, or None
        if it can (every worker is a process restarted by a nanny). Asking a pool on a
        cluster given by ``address`` starts it: only the scheduler knows its workers."""
        if self.address is None:
            if self.processes:
                return None
            return (
                f"the {self.backend!r} pool's own LocalCluster runs its workers as threads of one "
                "process (processes=False): a crashing job ends that process and the cluster with it, "
                "so crash recovery does not apply"
            )
        if self._state is _base._NEW:
            self.start()
        return self._crash_note

    @property
    def survives_crashes(self) -> bool:  # type: ignore[override]
        """A crashing job fails alone with WorkerCrashed (its worker is restarted)."""
        return self.crash_note is None

    # ------------------------------------------------------------------ hooks

    def _prepare(self, fn: Callable[..., Any], args: tuple) -> bytes:
        _base.check_plain_callable(self.backend, fn)
        try:
            return cloudpickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise InvalidCallable(
                f"the 'dask' backend sends each job to the cluster by cloudpickle, and {fn!r} with its "
                f"arguments cannot be pickled ({err}): pass picklable arguments (no locks, sockets or "
                "open files)"
            ) from err

    def _start_workers(self) -> None:
        self._token = uuid.uuid4().hex[:12]
        self._inflight: dict[str, _Task] = {}
        self._idle = threading.Condition(self._lock)  # shutdown waiting for abandoned tasks
        self._background: set[asyncio.Task] = set()
        self._pump_scheduled = False
        self._cluster_threads = self.workers  # of a cluster given by address: learnt when connecting
        # Each pushed event leaves the worker before its task's next job begins (see
        # _run_pack), where the pool recovers from a crashed worker: learnt when connecting.
        self._flush = self.address is None and self.processes
        self._refill_batch = 1
        self._to_fetch: list[tuple[_Task, asyncio.Future]] = []  # finished tasks to fetch
        self._to_stop: list[tuple[str, int]] = []  # tombstones to send, in one message
        self._revoking = 0  # jobs being taken back from their tasks
        self._packed = 0  # jobs sent behind another in a task (for tests)
        self._steals = 0  # jobs taken back from a task for an idle thread (for tests)
        self._fetching = False
        self._stopping = False
        self._cluster: _LocalClusterProcess | None = None
        self._client: Any = None
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name=f"{self.name}-loop", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            if self.address is None:
                self._cluster = _LocalClusterProcess(self.workers, self.processes)
            address = self.address or self._cluster.address
            connect = asyncio.run_coroutine_threadsafe(self._connect(address), self._loop)
            try:
                connect.result(self.connect_timeout + 5.0)
            except (TimeoutError, OSError, concurrent.futures.TimeoutError) as err:
                connect.cancel()
                raise PoolBroken(f"pool {self.name} cannot reach the Dask scheduler at {address}: {err}") from err
        except BaseException:
            self._teardown(None)
            raise

    def _run_loop(self, ready: threading.Event) -> None:
        mark_internal()  # jobs it settles run their done-callbacks on the callback thread
        run_private_loop(self._loop, ready)

    async def _connect(self, address: str) -> None:
        client = await Client(
            address, asynchronous=True, timeout=self.connect_timeout, set_as_default=False, name=self.name
        )
        self._client = client
        # Outcomes pushed by the tasks (see _run_pack); subscribed before any task
        # is sent, on the same stream, so the scheduler knows it first.
        self._topic = f"poolbench-{self._token}"
        client.subscribe_topic(self._topic, self._on_pushed)
        if self._cluster is not None:
            return
        await client.wait_for_workers(1, timeout=self.connect_timeout)
        info = await client.scheduler.identity(n_workers=-1)
        workers = info.get("workers", {}).values()
        threads = max(1, sum(w.get("nthreads", 0) for w in workers))
        if self._workers_from_cluster:
            self.workers = _IN_FLIGHT_PER_THREAD * threads
        self._cluster_threads = threads
        self._refill_batch = max(1, (self.workers - threads) // 2)
        self._crash_note = None
        if any(w.get("pid") == os.getpid() for w in workers):
            self._crash_note = (
                f"the cluster at {address} runs workers inside this process: a crashing job ends the "
                "program, so crash recovery does not apply"
            )
        elif not all(w.get("nanny") for w in workers):
            self._crash_note = (
                f"the cluster at {address} has workers without a nanny: a crashing job ends its worker "
                "for good instead of having it restarted, so crash recovery does not apply"
            )
        self._flush = self._crash_note is None

    def _on_enqueued_locked(self) -> None:
        if not self._pump_scheduled and not self._stopping:
            self._pump_scheduled = True  # one pump serves every job queued meanwhile
            self._loop.call_soon_threadsafe(self._pump)

    def _check_blocking_allowed(self) -> None:
        if threading.current_thread() is self._thread:
            raise PoolError(
                "the queue is full, and blocking here would stall the thread that delivers this pool's "
                "results: pass overflow='reject' or wait=0, or submit from another thread"
            )

    def _check_blocking_shutdown(self, wait: bool) -> None:
        if wait and self._report is None and threading.current_thread() is getattr(self, "_thread", None):
            raise PoolError(
                "shutdown(wait=True) here would block the thread that delivers this pool's results: "
                "call shutdown(wait=False) there"
            )

    # ------------------------------------------------------------ dispatch (loop)

    def _pump(self) -> None:
        """Move waiting jobs to the cluster, at most ``workers`` running at once; with
        more waiting than threads, several ride in one task. With the queue empty and
        a thread idle, take back jobs that wait in a task behind another."""
        tasks: list[_Task] = []
        steal: list[_Attempt] = []
        with self._lock:
            self._pump_scheduled = False
            if self._stopping:
                return
            threads = min(self._cluster_threads, self.workers)
            free = self.workers - self._running
            # Once every thread of the cluster has work, refill in a batch, later.
            if free >= self._refill_batch or self._running < self._cluster_threads:
                while True:
                    job = self._take_locked()
                    if job is None:
                        break
                    tasks.append(self._pack_locked(job, threads))
            if not tasks and len(self._heap) <= self._dead_in_heap:
                steal = self._steal_locked(threads)
        if steal:
            self._spawn(self._take_back(steal))
        if not tasks:
            return
        by_priority: dict[int, list[_Task]] = {}
        for task in tasks:
            head = task.slots[0]
            if head.deadline is not None:
                self._deadlines.arm(head, head.deadline, head.job, head.attempt)
            by_priority.setdefault(task.priority, []).append(task)
        for priority, group in by_priority.items():
            self._submit(priority, group)

    def _pack_locked(self, job: Job, threads: int) -> _Task:
        """A task for ``job`` (just taken: running), and, when more jobs wait than
        the cluster has threads, a share of them behind it: they stay queued (the
        pool's prefetch) until the worker reports that they began."""
        task = _Task(f"poolbench-{self._token}-{job.job_id}-{job.attempt}", job.priority)
        task.add(job, job.attempt, _BEGUN, None if job.timeout is None else job._started_at + job.timeout)
        waiting = len(self._heap) - self._dead_in_heap
        if waiting >= threads:  # with this one, more than the threads
            room = _PACK_BYTES
            priority = job.priority

            def fits(other: Job) -> bool:
                return other.priority == priority and len(other._payload) <= room

            for _ in range(min(_PACK - 1, waiting // threads)):
                nxt = self._take_prefetch_locked(fits)
                if nxt is None:
                    break
                room -= len(nxt._payload)
                task.add(nxt, nxt.attempt + 1, _PACKED, None)
                self._packed += 1
        self._inflight[task.key] = task
        return task

    def _submit(self, priority: int, tasks: list[_Task]) -> None:
        """Send tasks of one priority to the cluster, as one graph."""
        with self._lock:
            for task in tasks:
                head = task.slots[0]
                if head.abandoned:  # cancelled (or timed out) before it left: nothing of it runs
                    self._end_task_locked(task)
                    continue
                for slot in task.slots[1:]:
                    if slot.job._status is not _base.QUEUED:  # cancelled before it left
                        self._close_locked(slot)
            tasks = [task for task in tasks if not task.ended]
        if not tasks:
            return
        now = time.monotonic()
        entries = []
        for task in tasks:
            head = task.slots[0]
            job = head.job
            remaining = None if head.deadline is None else head.deadline - now
            pack = [(job.job_id, head.attempt, head.deadline, remaining, None, job._payload)]
            pack += [
                (s.job.job_id, s.attempt, None, None, s.job.timeout, s.job._payload)
                for s in task.slots[1:]
                if s.state is _PACKED
            ]
            entries.append(pack)
        keys = [task.key for task in tasks]
        try:
            futures = self._client.map(
                _run_pack,
                keys,
                entries,
                clock=_clock_id(),
                topic=self._topic,
                flush=self._flush,
                key=keys,
                pure=False,
                priority=priority,
            )
        except Exception as exc:  # noqa: BLE001 - the client refused them (closed, say): their first jobs fail
            with self._lock:
                for task in tasks:
                    self._end_task_locked(task)  # the rest go back to the queue
            for task in tasks:
                self._finish_attempt(task.slots[0].job, task.slots[0].attempt, ERROR, exc)
            return
        for task, future in zip(tasks, futures, strict=False):
            task.future = future
            self._spawn(self._track(task))

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------ what the workers report (loop)

    def _on_pushed(self, event: tuple[float, Any]) -> None:
        """A job of a task ended, and the task began its next one (or none): pushed by
        the task, ahead of Dask's report that the task finished (see _run_pack)."""
        try:
            key, job_id, started, data, next_id, next_started = event[1]
        except (TypeError, ValueError):
            return
        task = self._inflight.get(key)
        if task is None:
            return
        slot = task.by_id.get(job_id)
        if slot is None or slot.state is _CLOSED:
            return
        outcome = self._decode(slot.job, slot.attempt, data)  # before the lock: it unpickles the value
        now = time.monotonic()
        lost: list[_Attempt] = []
        arm: list[_Attempt] = []
        with self._lock:
            if slot.state is _CLOSED:
                return
            self._skip_to_locked(task, slot.index, lost)
            if slot.state is _PACKED:  # it began unannounced: the jobs before it were skipped
                self._begin_locked(slot, now if started is None else started, arm)
            self._close_locked(slot)
            # Ended before the next begins, in this one round of the lock: busy never
            # counts both (stats() would show more busy than workers, and a submit with
            # overflow="reject" could find no room).
            ended = self._end_locked(slot, outcome)
            nxt = None if next_id is None else task.by_id.get(next_id)
            if nxt is not None:
                self._skip_to_locked(task, nxt.index, lost)
                if nxt.state is _PACKED:
                    self._begin_locked(nxt, now if next_started is None else next_started, arm)
        self._arm(arm)
        if ended is not None:
            self._settle_ended(slot.job, *ended)
        self._settle_lost(lost)
        if next_id is None:
            self._pump()  # the task is about to end: its thread is free

    def _begin_locked(self, slot: _Attempt, started_at: float, arm: list[_Attempt]) -> None:
        """A job sent behind others began (at ``started_at``, on this machine's clock)."""
        slot.state = _BEGUN
        job = slot.job
        if self._start_prefetched_locked(job, started_at):
            if job.timeout is not None:
                slot.deadline = started_at + job.timeout
                arm.append(slot)
        else:  # cancelled, and the cancel reached its worker too late: it runs there for nothing
            slot.abandoned = True
            slot.late = True  # whoever stops it sends the stop (see _stop_attempt, _stop_packed)
            self._abandoned += 1

    def _skip_to_locked(self, task: _Task, index: int, lost: list[_Attempt]) -> None:
        """The task has gone past every slot before ``index`` that is still open: it
        skipped them (they had a tombstone), so none of them began."""
        for slot in task.slots[task.cursor : index]:
            if slot.state is _PACKED:
                self._unprefetch_locked(slot.job)  # taken back (the answer is on its way), or cancelled
            elif slot.state is _BEGUN and slot.job._status is _base.RUNNING and slot.job.attempt == slot.attempt:
                lost.append(slot)  # cannot happen: only a settled job has a tombstone
            self._close_locked(slot)

    def _close_locked(self, slot: _Attempt) -> None:
        if slot.state is _CLOSED:
            return
        slot.state = _CLOSED
        if slot.deadline is not None:
            self._deadlines.disarm(slot)  # its own small lock, never held while taking ours
        if slot.abandoned:
            slot.abandoned = False
            self._abandoned -= 1
        task = slot.task
        while task.cursor < len(task.slots) and task.slots[task.cursor].state is _CLOSED:
            task.cursor += 1

    def _end_task_locked(self, task: _Task) -> None:
        """Dask is done with the task: whatever of it never began goes back to the queue."""
        if task.ended:
            return
        task.ended = True
        for slot in task.slots[task.cursor :]:
            if slot.state is _PACKED:
                self._unprefetch_locked(slot.job)  # no attempt used: it never began
            self._close_locked(slot)
        self._inflight.pop(task.key, None)
        if not self._inflight:
            self._idle.notify_all()

    def _arm(self, slots: list[_Attempt]) -> None:
        for slot in slots:
            self._deadlines.arm(slot, slot.deadline, slot.job, slot.attempt)
        with self._lock:
            ended = [slot for slot in slots if slot.state is not _BEGUN]
        for slot in ended:  # it ended meanwhile, maybe before it was armed
            self._deadlines.disarm(slot)

    def _end_locked(self, slot: _Attempt, decoded: tuple[Any, Any]) -> tuple[str, Any, float | None] | None:
        """End the slot's attempt with its decoded outcome (lock held); what
        ``_settle_ended`` needs, to call once the lock is released, or None."""
        job, attempt = slot.job, slot.attempt
        outcome, value = decoded
        if outcome is _LATE:  # began past its deadline: timed out, without running
            outcome, value = _base.TIMEOUT, self._timeout_error(job, attempt)
        elif outcome is None:  # skipped there: settled already
            return None
        return self._end_attempt_locked(job, attempt, outcome, value, False)

    def _settle_lost(self, lost: list[_Attempt]) -> None:
        for slot in lost:
            err = PoolError(f"job {slot.job.job_id} (attempt {slot.attempt}): its Dask task ended without its outcome")
            self._finish_attempt(slot.job, slot.attempt, ERROR, err)

    async def _track(self, task: _Task) -> None:
        future = task.future
        failure: tuple[str, Any] | None = None
        result: tuple[dict[int, bytes], list[int]] | None = None
        try:
            # Wait for Dask's report that the task ended: it comes on the client's
            # stream, without a round trip, after every outcome the task pushed. Only a
            # task that kept an outcome (too large to push) is fetched, in a batch with
            # every other that ended meanwhile (see _fetch_batches).
            await future.exception()
            if future.status == "finished":
                if self._needs_result(task):
                    result = await self._fetch(task)
                    if result is None:  # the batch could not fetch it
                        result = await future
            else:
                await future  # raises Dask's error
        except KilledWorker as exc:
            failure = (CRASH, exc)
        except FutureCancelledError as exc:
            if exc.reason == "scheduler-connection-lost":
                self._lost_scheduler(exc)
            failure = (ERROR, exc)  # else cancelled by someone else (client.restart, say)
        except Exception as exc:  # noqa: BLE001 - Dask could not run or return it: its running job fails
            failure = (ERROR, exc)
        finally:
            task.future = future = None  # releases the task's result on the cluster
        self._conclude(task, result, failure)
        self._pump()

    def _needs_result(self, task: _Task) -> bool:
        """Whether a job of the ended task still waits for its outcome (kept by the task)."""
        return any(
            slot.state is _BEGUN and slot.job._status is _base.RUNNING and slot.job.attempt == slot.attempt
            for slot in task.slots[task.cursor :]
        )

    def _conclude(
        self, task: _Task, result: tuple[dict[int, bytes], list[int]] | None, failure: tuple[str, Any] | None
    ) -> None:
        """The task ended: settle what it ran and put back what it never began."""
        kept = result[0] if result else {}
        # Decoded before the lock (it unpickles values); the slots are the loop's own.
        decoded = {
            slot.job.job_id: self._decode(slot.job, slot.attempt, kept[slot.job.job_id])
            for slot in task.slots[task.cursor :]
            if slot.job.job_id in kept
        }
        arm: list[_Attempt] = []
        ended: list[tuple[Job, tuple[str, Any, float | None]]] = []
        lost: list[_Attempt] = []
        now = time.monotonic()
        with self._lock:
            for slot in task.slots[task.cursor :]:
                outcome = decoded.get(slot.job.job_id)
                settled = None
                if outcome is not None:
                    if slot.state is _PACKED:  # only without a worker to push from: it began unannounced
                        self._begin_locked(slot, now, arm)
                    # Each ends before the next begins (busy never counts both).
                    settled = self._end_locked(slot, outcome)
                elif slot.state is _BEGUN:
                    if failure is None:
                        lost.append(slot)
                    else:  # it was running when the task failed (its worker died, say)
                        kind, exc = failure
                        value = self._crash_error(slot.job, slot.attempt, exc) if kind is CRASH else exc
                        settled = self._end_attempt_locked(slot.job, slot.attempt, kind, value, False)
                if settled is not None:
                    ended.append((slot.job, settled))
                if slot.state is not _PACKED:
                    self._close_locked(slot)
            self._end_task_locked(task)  # the packed ones go back, no attempt used
        for job, settled in ended:
            self._settle_ended(job, *settled)
        # A begun job with no outcome was skipped there (it was settled, then had a
        # tombstone), or its outcome is lost: the latter fails it.
        self._settle_lost([s for s in lost if s.job._status is _base.RUNNING and s.job.attempt == s.attempt])

    def _fetch(self, task: _Task) -> asyncio.Future:
        """The result of a finished task (None if it could not be fetched), from the
        next batch fetch: one ``gather`` for every task that ended meanwhile."""
        waiter = self._loop.create_future()
        self._to_fetch.append((task, waiter))
        if not self._fetching:
            self._fetching = True
            self._spawn(self._fetch_batches())
        return waiter

    async def _fetch_batches(self) -> None:
        batch: list[tuple[_Task, asyncio.Future]] = []
        try:
            while self._to_fetch:
                batch, self._to_fetch = self._to_fetch, []
                try:
                    data = await self._client.gather({task.key: task.future for task, _ in batch}, errors="skip")
                except Exception:  # noqa: BLE001 - each task is then asked for on its own
                    data = {}
                for task, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(data.get(task.key))
                batch = []
        finally:
            self._fetching = False
            for _, waiter in batch + self._to_fetch:  # cancelled (teardown)
                waiter.cancel()
            self._to_fetch = []

    def _decode(self, job: Job, attempt: int, data: bytes) -> tuple[Any, Any]:
        try:
            _, _, ok, value, tb = pickle.loads(data)
        except Exception as err:  # noqa: BLE001 - a result this process cannot rebuild fails its job only
            exc = pickle.UnpicklingError(f"job {job.job_id} returned a result that cannot be unpickled here: {err!r}")
            exc.__cause__ = err
            return ERROR, exc
        if ok:
            return OK, value
        if ok is None:  # the job did not run its function
            return (_LATE, None) if value == _LATE else (None, None)
        try:
            exc = pickle.loads(value)
        except Exception as err:  # noqa: BLE001
            exc = RuntimeError(f"job {job.job_id} failed, and its exception could not be rebuilt here: {err!r}")
        exc.__cause__ = RemoteTraceback(tb)
        return ERROR, exc

    @staticmethod
    def _crash_error(job: Job, attempt: int, exc: BaseException) -> WorkerCrashed:
        cause = (
            "the Dask worker running it died (KilledWorker); Dask does not tell why: most often "
            "the out-of-memory killer or the nanny's memory limit, a crash in native code, or os._exit()"
        )
        err = WorkerCrashed(f"job {job.job_id} (attempt {attempt}): {cause}: {exc}", job_id=job.job_id, cause=cause)
        err.__cause__ = exc
        return err

    def _lost_scheduler(self, exc: BaseException) -> None:
        """The client lost the scheduler, and with it every task: fail every job."""
        with self._lock:
            if self._close_reason is not None:
                return
            self._close_reason = f"pool {self.name} lost its Dask scheduler ({exc}); create a new pool"
        self._break(exc)

    # ------------------------------------------------------------ stopping one job

    def _on_deadline(self, job: Job, attempt: int) -> None:
        if self._settle_timeout(job, attempt, preempted=True):
            self._stop_running(job, attempt)

    def _preempted_locked(self, job: Job) -> None:
        slot = job.backend_slot
        if isinstance(slot, _Attempt) and slot.attempt == job.attempt and slot.state is _BEGUN and not slot.abandoned:
            slot.abandoned = True
            self._abandoned += 1

    def _stop_running(self, job: Job, attempt: int) -> None:
        slot = job.backend_slot
        if isinstance(slot, _Attempt) and slot.state is _PACKED and threading.current_thread() is not self._thread:
            # Cancelled while it waited in its task: it must never begin. Return once
            # every worker holds its tombstone (a worker that began it already, a moment
            # ago, cancels its context instead). On the loop thread itself this
            # cannot wait: the tombstone is sent, no more.
            try:
                asyncio.run_coroutine_threadsafe(self._stop_packed(slot), self._loop).result(_CLOSE_TIMEOUT)
            except Exception:  # noqa: BLE001 - loop closed, scheduler gone: the task ends with its worker
                pass
            return
        try:
            self._loop.call_soon_threadsafe(self._stop_attempt, slot, attempt)
        except RuntimeError:  # the loop is closed: the pool is stopped already
            pass

    def _stop_attempt(self, slot: Any, attempt: int) -> None:
        """(loop) A job was cancelled or timed out: make sure it never begins, or
        cancel its context where it runs; and take back what waits behind it."""
        if isinstance(slot, _Attempt) and not slot.task.ended and slot.task.future is not None:
            if slot.state is _PACKED:  # cancelled while it waited in its task
                self._send_stop([(slot.key, slot.job.job_id)])
            elif slot.state is _BEGUN and (slot.late or slot.attempt == attempt):
                # A timed-out job already knows its deadline there; a cancel must be sent,
                # also to one that began there before its cancel arrived (late: the pool
                # heard that it began before this stop; its attempt was never counted).
                if slot.late or slot.deadline is None or time.monotonic() < slot.deadline:
                    self._send_stop([(slot.key, slot.job.job_id)])
                self._take_back_behind(slot)
        self._wake()  # its place on the cluster is free for the next job

    def _take_back_behind(self, slot: _Attempt) -> None:
        """(loop) The job of ``slot`` was stopped but may run on there: take back the
        jobs packed behind it that have not begun."""
        with self._lock:
            behind = [
                s
                for s in slot.task.slots[slot.index + 1 :]
                if s.state is _PACKED and not s.revoking and s.job._prefetched
            ]
            for s in behind:
                s.revoking = True
            self._revoking += len(behind)
        if behind:
            self._spawn(self._take_back(behind))

    def _wake(self) -> None:
        with self._lock:
            self._on_enqueued_locked()

    async def _stop_packed(self, slot: _Attempt) -> None:
        if slot.task.ended or slot.task.future is None:
            return
        if slot.state is _PACKED:
            await self._stop_on_workers([(slot.key, slot.job.job_id)])
        elif slot.state is _BEGUN and slot.late:
            # It began there before its cancel arrived, and the pool heard of that
            # first: its context is cancelled where it runs.
            self._take_back_behind(slot)
            await self._stop_on_workers([(slot.key, slot.job.job_id)])

    def _send_stop(self, items: list[tuple[str, int]]) -> None:
        """Tombstones for these jobs on every worker, sent in one message per loop round."""
        if not self._to_stop:
            self._loop.call_soon(self._flush_stops)
        self._to_stop += items

    def _flush_stops(self) -> None:
        items, self._to_stop = self._to_stop, []
        if items:
            self._spawn(self._stop_on_workers(items))

    async def _stop_on_workers(self, items: list[tuple[str, int]]) -> None:
        try:
            await self._client.run(_stop_on_worker, items, False, on_error="ignore")
        except Exception:  # noqa: BLE001 - scheduler gone: the jobs are settled, the tasks end with their workers
            pass

    def _steal_locked(self, threads: int) -> list[_Attempt]:
        """The queue is empty and a thread of the cluster is idle: pick, from the
        tasks with most jobs waiting in them, the last of those jobs (one per idle
        thread), to take back."""
        idle = threads - len(self._inflight) - self._revoking
        if idle <= 0:
            return []
        waiting = []
        for task in self._inflight.values():
            packed = [
                s for s in task.slots[task.cursor :] if s.state is _PACKED and not s.revoking and s.job._prefetched
            ]
            if packed:
                waiting.append(packed)
        picks: list[_Attempt] = []
        while idle > 0 and waiting:
            waiting.sort(key=len)
            slot = waiting[-1].pop()
            if not waiting[-1]:
                waiting.pop()
            slot.revoking = True
            picks.append(slot)
            idle -= 1
        self._revoking += len(picks)
        return picks

    async def _take_back(self, slots: list[_Attempt]) -> None:
        """Take jobs back from their tasks if they have not begun: a tombstone on
        every worker, and each worker says which of them began there. Those that
        did not go back to the queue (no attempt used); the others run where they are."""
        items = [(slot.key, slot.job.job_id) for slot in slots]
        began: set[tuple[str, int]] | None = set()
        try:
            replies = await self._client.run(_stop_on_worker, items, True, on_error="return")
            for reply in replies.values():
                if isinstance(reply, BaseException):
                    began = None  # unknown there: leave them; the task's reports settle them
                    break
                began.update((key, job_id) for key, job_id in reply)
        except Exception:  # noqa: BLE001
            began = None
        with self._lock:
            self._revoking -= len(slots)
            for slot, item in zip(slots, items, strict=False):
                slot.revoking = False
                if began is not None and item not in began and slot.state is _PACKED:
                    if slot.job._prefetched:
                        self._steals += 1
                    self._unprefetch_locked(slot.job)
                    self._close_locked(slot)

    # ------------------------------------------------------------ stopping the pool

    def _stop_workers(self, deadline: float | None) -> int:
        with self._lock:
            self._stopping = True
            limit = time.monotonic() + _STOP_WAIT if deadline is None else deadline
            while self._inflight:
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(remaining)
            left = list(self._inflight.values())
        return self._teardown(left)

    def _teardown(self, left: list[_Task] | None) -> int:
        """Close the client, end the loop thread, and close the cluster if it is ours.
        Returns the number of tasks left running on a cluster that is not ours."""
        if self._loop.is_running():
            closing = asyncio.run_coroutine_threadsafe(self._disconnect(left or []), self._loop)
            try:
                closing.result(_CLOSE_TIMEOUT + 1.0)
            except Exception:  # noqa: BLE001 - a dead scheduler cannot stop the teardown
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        if self._cluster is not None:
            self._cluster.close(kill=bool(left))  # what still runs there ends with it
        still_running = 0
        with self._lock:
            for task in left or ():
                if self._cluster is None:
                    still_running += 1
                else:
                    self._end_task_locked(task)
        return still_running

    async def _disconnect(self, left: list[_Task]) -> None:
        client = self._client
        if client is None:
            return
        futures = [task.future for task in left if task.future is not None]
        if futures and self._cluster is None:
            try:  # let the cluster forget them; their threads run on until they return
                await client.cancel(futures, reason="poolbench-shutdown", msg="the pool shut down")
            except Exception:  # noqa: BLE001
                pass
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        topic = getattr(self, "_topic", None)
        if topic is not None:
            try:  # the scheduler keeps a topic's latest events: drop this pool's outcomes
                client.unsubscribe_topic(topic)
                await asyncio.wait_for(client.run_on_scheduler(_forget_topic, topic), _CLOSE_TIMEOUT)
            except Exception:  # noqa: BLE001 - best effort: at most 1000 small events stay behind
                pass
        await client.close(timeout=_CLOSE_TIMEOUT)
