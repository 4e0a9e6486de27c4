"""The client side of the "dask" backend: ``DaskBackend``, plain callables on a Dask
distributed cluster, at most W at once. It uses only ``pools.lowlevel`` and
``pools.remote``; its tasks run ``_worker.run_pack`` on the cluster.

Data flow::

    submit() ─prepare: cloudpickle (fn, args)─▶ pool queue ─wake_locked─▶ the backend's loop thread: _pump
                                                   ▲                        │ take_locked ≤ W jobs, each the head of a
                                                   │ give_back_locked       │ task (in batches once every thread has
                                                   │ (packed jobs that      │ work); with more waiting than threads, a
                                                   │ never began: their     │ share more behind it (Backlog: ≤ 16 jobs,
                                                   │ task died, the job     │ 64 KiB; prefetch_locked: still queued);
                                                   │ before them stopped,   │ per priority one client.map(run_pack,
                                                   │ or taken back for an   │ key=<pool>-<job>-<attempt>, priority=p)
                                                   │ idle thread:           ▼
                                                   │ Backlog.take_back)   Dask scheduler ──▶ a worker thread: run_pack
                                                   │                        (_worker) runs the jobs in order, each
                                                   │                        with its own current_context(), skips
                                                   │                        those with a tombstone, and after each
                                                   │                        pushes one event: its outcome message
                                                   │                        (pools.remote, ≤ 8 KiB) and which job
                                                   │                        began next (where crashes are survived:
                                                   │                        on the scheduler before that job begins)
                                                   │                        │ its events, then its end
         dispatcher.end_locked + settle, ◀─────────┴──── _on_pushed() ◀─────┤
         dispatcher.started_locked                       _track() ◀─────────┘

    _on_pushed: the job ends and the next one is started_locked (its clock from when it began), in one round of
    the lock. _track: what never began is given back; a large outcome is fetched, in one gather for every task
    that ended meanwhile.

    Timer thread ── DeadlineWatch ──▶ dispatcher.timed_out(preempted=True): JobTimeout now (per job, from when it
                                      began); the worker knows the deadline too; the task is *abandoned*
                                      (stats().abandoned) until the job returns; the jobs behind it are taken back
    job.cancel() ─▶ stop_attempt ─▶ client.run(stop_on_worker, [(task, job)]) on every worker: the job's context
                                    is cancelled, or a tombstone keeps it from ever beginning (for a packed job,
                                    cancel() returns once every worker holds it)

The bounded queue, priorities, admission, retries, statistics and shutdown are the
pool's (``pools.Pool``); this backend only moves at most ``workers`` running jobs at
a time from the queue to the cluster and reports each job's outcome to its
dispatcher as its task reports it. ``workers`` is how many jobs are running on the
cluster at once, each the current job of one task, running or waiting there for a
thread (``stats().busy`` counts them); on a cluster given by address it defaults to
4 per thread of the cluster (``set_workers_locked`` once connected), so that a
thread that finishes a task finds the next one on its worker instead of waiting for
the pool's round trip.

What a task costs the scheduler is what a task of ``client.map`` costs (about five
messages); the pool adds one small event per job, and shares the task among up to
16 jobs when more jobs wait than the cluster has threads (a share of the queue per
thread: ``pools.remote.Backlog`` with ``cover=None``). The packed jobs are the pool's
*prefetch*: queued in every sense (counted as waiting, cancellable as waiting, their
clock not started) until the worker reports that they began, which it does in the
event of the job before. A cancelled one gets a tombstone on every worker before
``cancel()`` returns, so it never begins (unless its worker began it a moment before
the tombstone arrived: then its context is cancelled, as for a running job). If the
task dies, or the job before a packed one is timed out or cancelled, what never
began goes back to the queue without using an attempt; when the queue is empty and a
cluster thread is idle, the last not-yet-begun jobs of the fullest tasks are taken
back (each worker answers exactly whether they began), so that no job waits behind
a long one while a thread could run it. Only jobs of the head's priority are packed
with it.

Where the pool recovers from crashes (``capabilities.survives_crashes``: worker
processes under a nanny), a task writes each event on its worker's connection to the
scheduler, and waits for that, before it begins its next job (Dask would batch it
for up to 2 ms): if that job kills the worker process, the scheduler has the event
before it learns of the death, and passes both on in that order, so the pool charges
the crash to the job that was running, never to the one that ended just before it.
A job's end and its successor's begin are counted in one round of the pool's lock,
so ``busy`` never exceeds ``workers``.

Dask runs its side of the work on the backend's own event loop thread (an
asynchronous ``Client``), so no Dask call ever blocks a submitter, and no thread is
made per job.

Dask cannot stop a task that is already running on a worker. So a timed-out or
cancelled job ends for its caller at once (``JobTimeout`` / cancelled), the job's
``current_context()`` is cancelled — it carries the deadline, and a cancel is sent to
the workers — and its thread is counted in ``stats().abandoned`` until the job
returns. A job that never looks at its context keeps its worker thread until it
returns, as on the thread backend.

With no ``address`` the pool starts a ``LocalCluster`` on 127.0.0.1 in a child
process that it owns (``_cluster``: threads by default, worker processes with
``processes=True``) and closes it at shutdown; a cluster given by ``address`` is
never closed.

Coroutine functions are refused (``InvalidCallable``): Dask would run them on the
worker's event loop, where one that blocks stalls the worker's heartbeats and
transfers. Submit a plain function that calls ``asyncio.run()``, or use "asyncio".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import cloudpickle
from distributed import Client
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from ..exceptions import InvalidArgument, InvalidCallable, PoolBroken, PoolError, WorkerCrashed
from ..lowlevel import (
    Backend,
    Capabilities,
    DeadlineWatch,
    Dispatcher,
    Ended,
    Job,
    JobStatus,
    Outcome,
    check_number,
    check_plain_callable,
    mark_internal,
    run_private_loop,
)
from ..remote import LATE, SKIPPED, Backlog, Message, decode, payload_size
from ._cluster import LocalClusterProcess
from ._worker import Entry, Initializer, clock_id, forget_topic, run_pack, stop_on_worker

__all__ = ["DaskBackend"]

OK, ERROR, TIMEOUT, CRASH = Outcome.OK, Outcome.ERROR, Outcome.TIMEOUT, Outcome.CRASH
_QUEUED = JobStatus.QUEUED

_STOP_WAIT = 5.0  # shutdown(timeout=None): seconds that abandoned tasks get to end
_CLOSE_TIMEOUT = 5.0  # seconds for the client to say goodbye to the scheduler
# Default ``workers`` on a cluster given by address: jobs on the cluster per thread of it.
_IN_FLIGHT_PER_THREAD = 4
# A task carries one job, or, when more jobs wait than the cluster has threads, a share
# of them behind it: what a task costs the scheduler is shared among them.
_PACK_JOBS = 16  # the job that left running included
_PACK_BYTES = 64 * 1024  # of payload behind the first job


# States of a job's place in a task (an _Attempt).
_PACKED = "packed"  # sent in a task behind others, not begun: its job is still queued (prefetched)
_BEGUN = "begun"  # running there: the first job of a task from its dispatch, a later one from its start
_CLOSED = "closed"  # ended, skipped, or taken back to the queue


class _Attempt:
    """One job's place in a task on the cluster (loop thread; fields under the pool lock)."""

    __slots__ = ("abandoned", "attempt", "deadline", "index", "job", "late", "revoking", "state", "task")

    def __init__(self, job: Job[Any], attempt: int, task: _Task, state: str, deadline: float | None) -> None:
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

    def add(self, job: Job[Any], attempt: int, state: str, deadline: float | None) -> _Attempt:
        slot = _Attempt(job, attempt, self, state, deadline)
        self.slots.append(slot)
        self.by_id[job.job_id] = slot
        job.backend_slot = slot
        return slot


def _crash_error(job: Job[Any], attempt: int, exc: BaseException) -> WorkerCrashed:
    cause = (
        "the Dask worker running it died (KilledWorker); Dask does not tell why: most often "
        "the out-of-memory killer or the nanny's memory limit, a crash in native code, or os._exit()"
    )
    err = WorkerCrashed(f"job {job.job_id} (attempt {attempt}): {cause}: {exc}", job_id=job.job_id, cause=cause)
    err.__cause__ = exc
    return err


class DaskBackend(Backend):
    """Jobs on a Dask cluster: ``address="tcp://host:8786"`` uses an existing one
    (never closed by the pool; ``workers``, the jobs on the cluster at once, defaults to
    4 per thread of it), no address starts a LocalCluster on 127.0.0.1 in a child
    process owned by the pool (``processes=True`` for one worker process per worker,
    else one worker with ``workers`` threads). Callables and arguments cross by
    cloudpickle."""

    name = "dask"
    #: what every Dask pool can do; ``survives_crashes`` depends on the cluster (see __init__)
    capabilities = Capabilities(
        runs="callables",
        stops_running_jobs=False,  # a running task cannot be stopped: its context is cancelled
        survives_crashes=False,
        carries_contextvars=False,
        reports_exit_status=False,  # a crash is reported by Dask as KilledWorker, without exit code or signal
        batches_map=True,
        lifecycle=frozenset({"initializer", "resize"}),
        lifecycle_not_applicable=(
            (
                "max_tasks_per_worker",
                "its workers belong to the Dask cluster, which recycles them itself (a worker's "
                "lifetime=, the nanny restarting it)",
            ),
            (
                "max_memory_per_worker",
                "its workers belong to the Dask cluster, whose nannies restart a worker above its "
                "memory_limit (distributed.worker.memory.terminate)",
            ),
            ("min_workers", "the Dask cluster owns its workers: scale it with cluster.adapt(minimum=, maximum=)"),
            ("idle_timeout", "the Dask cluster owns its workers: scale it with cluster.adapt(minimum=, maximum=)"),
        ),
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        workers: int | None = None,
        address: str | None = None,
        processes: bool | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        super().__init__(dispatcher)
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
        check_number("connect_timeout", connect_timeout, minimum=0, inclusive=False, none_ok=False)
        options = dispatcher.options
        self._init: bytes | None = None
        if options.initializer is not None:
            try:
                self._init = cloudpickle.dumps(
                    (options.initializer, options.initargs), protocol=pickle.HIGHEST_PROTOCOL
                )
            except Exception as err:
                raise InvalidArgument(
                    f"the 'dask' backend sends the initializer to each worker by cloudpickle, and "
                    f"{options.initializer!r} with initargs {options.initargs!r} cannot be pickled ({err})"
                ) from err
        self._init_error: BaseException | None = None
        self.address = address
        self.processes = bool(processes)
        self.connect_timeout = connect_timeout
        self._lock = dispatcher.lock
        self._workers_from_cluster = workers is None and address is not None
        # Deadlines of running jobs, watched as the thread and asyncio backends do.
        self._deadlines = DeadlineWatch(dispatcher.timer, self._on_deadline)
        # Of the pool's own cluster: known now. Of a cluster given by address: learnt
        # when start() connects (only the scheduler knows its workers).
        if address is not None:
            self.capabilities = self._crash_capabilities(
                f"crash recovery is not known until the pool has connected to the cluster at {address}: "
                "start() it first"
            )
        elif not self.processes:
            self.capabilities = self._crash_capabilities(
                f"the {self.name!r} pool's own LocalCluster runs its workers as threads of one "
                "process (processes=False): a crashing job ends that process and the cluster with it, "
                "so crash recovery does not apply"
            )
        else:
            self.capabilities = self._crash_capabilities(None)

    @classmethod
    def _crash_capabilities(cls, no_crash_recovery: str | None) -> Capabilities:
        """The capabilities, with crashes survived exactly when no reason says otherwise."""
        return dataclasses.replace(
            cls.capabilities, survives_crashes=no_crash_recovery is None, no_crash_recovery=no_crash_recovery
        )

    # ------------------------------------------------------------------ hooks

    def prepare(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
        check_plain_callable(self.name, fn)
        try:
            payload: bytes = cloudpickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
            return payload
        except Exception as err:
            raise InvalidCallable(
                f"the 'dask' backend sends each job to the cluster by cloudpickle, and {fn!r} with its "
                f"arguments cannot be pickled ({err}): pass picklable arguments (no locks, sockets or "
                "open files)"
            ) from err

    def start(self) -> None:
        self._token = uuid.uuid4().hex[:12]
        self._topic: str | None = None  # the pool's pushed outcomes, once connected
        self._inflight: dict[str, _Task] = {}
        self._idle = threading.Condition(self._lock)  # shutdown waiting for abandoned tasks
        self._background: set[asyncio.Task[Any]] = set()
        self._pump_scheduled = False
        self._cluster_threads = self.dispatcher.workers  # of a cluster given by address: learnt when connecting
        # Each pushed event leaves the worker before its task's next job begins (see
        # run_pack), where the pool recovers from a crashed worker: learnt when connecting.
        self._flush = self.capabilities.survives_crashes
        self._refill_batch = 1
        self._backlog = Backlog(most_jobs=_PACK_JOBS, most_bytes=_PACK_BYTES, cover=None)
        self._to_fetch: list[tuple[_Task, asyncio.Future[Any]]] = []  # finished tasks to fetch
        self._to_stop: list[tuple[str, int]] = []  # tombstones to send, in one message
        self._revoking = 0  # jobs being taken back from their tasks
        self._packed = 0  # jobs sent behind another in a task (for tests)
        self._steals = 0  # jobs taken back from a task for an idle thread (for tests)
        self._fetching = False
        self._stopping = False
        self._lost = False  # the scheduler is gone: the pool is broken
        self._cluster: LocalClusterProcess | None = None
        self._client: Any = None
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready,), name=f"{self.dispatcher.name}-loop", daemon=True
        )
        self._thread.start()
        ready.wait()
        try:
            if self.address is None:
                self._cluster = LocalClusterProcess(self.dispatcher.workers, self.processes)
                address = self._cluster.address
            else:
                address = self.address
            connect = asyncio.run_coroutine_threadsafe(self._connect(address), self._loop)
            try:
                connect.result(self.connect_timeout + 5.0 + (0.0 if self._init is None else self.connect_timeout))
            except (TimeoutError, OSError, concurrent.futures.TimeoutError) as err:
                connect.cancel()
                raise PoolBroken(
                    f"pool {self.dispatcher.name} cannot reach the Dask scheduler at {address}: {err}"
                ) from err
        except BaseException:
            self._teardown(None)
            if self.address is not None and self._client is None:
                self.capabilities = self._crash_capabilities(
                    f"the pool never reached the cluster at {self.address}, so its workers are unknown"
                )
            raise

    def _run_loop(self, ready: threading.Event) -> None:
        mark_internal()  # jobs it settles run their done-callbacks on the callback thread
        run_private_loop(self._loop, ready)

    async def _connect(self, address: str) -> None:
        client = await Client(
            address, asynchronous=True, timeout=self.connect_timeout, set_as_default=False, name=self.dispatcher.name
        )
        self._client = client
        # Outcomes pushed by the tasks (see run_pack); subscribed before any task
        # is sent, on the same stream, so the scheduler knows it first.
        self._topic = f"poolbench-{self._token}"
        client.subscribe_topic(self._topic, self._on_pushed)
        if self._init is not None:
            try:
                await client.register_plugin(Initializer(self._init), name=f"poolbench-init-{self._token}")
            except Exception as exc:  # noqa: BLE001 - the pool breaks once started (see start)
                self._init_error = exc
        if self._cluster is not None:
            return
        await client.wait_for_workers(1, timeout=self.connect_timeout)
        info = await client.scheduler.identity(n_workers=-1)
        workers = info.get("workers", {}).values()
        threads = max(1, sum(w.get("nthreads", 0) for w in workers))
        with self._lock:
            if self._workers_from_cluster:
                self.dispatcher.set_workers_locked(_IN_FLIGHT_PER_THREAD * threads)
            self._cluster_threads = threads
            self._refill_batch = max(1, (self.dispatcher.workers - threads) // 2)
        reason = None
        if any(w.get("pid") == os.getpid() for w in workers):
            reason = (
                f"the cluster at {address} runs workers inside this process: a crashing job ends the "
                "program, so crash recovery does not apply"
            )
        elif not all(w.get("nanny") for w in workers):
            reason = (
                f"the cluster at {address} has workers without a nanny: a crashing job ends its worker "
                "for good instead of having it restarted, so crash recovery does not apply"
            )
        self.capabilities = self._crash_capabilities(reason)
        self._flush = reason is None

    def after_start(self) -> None:
        if self._init_error is not None:  # the initializer failed on the workers: broken
            self.dispatcher.initializer_failed(self._init_error)

    def resize_locked(self, workers: int) -> None:
        # ``workers`` is how many jobs may be on the cluster at once: more are sent
        # now, or fewer once the running ones end.
        self.wake_locked()

    def wake_locked(self) -> None:
        if not self._pump_scheduled and not self._stopping:
            self._pump_scheduled = True  # one pump serves every job queued meanwhile
            self._loop.call_soon_threadsafe(self._pump)

    def refuse_blocking(self, call: Literal["submit", "shutdown"]) -> None:
        if threading.current_thread() is not getattr(self, "_thread", None):
            return
        if call == "submit":
            raise PoolError(
                "the queue is full, and blocking here would stall the thread that delivers this pool's "
                "results: pass overflow='reject' or wait=0, or submit from another thread"
            )
        raise PoolError(
            "shutdown(wait=True) here would block the thread that delivers this pool's results: "
            "call shutdown(wait=False) there"
        )

    # ------------------------------------------------------------ dispatch (loop)

    def _pump(self) -> None:
        """Move waiting jobs to the cluster, at most ``workers`` running at once; with
        more waiting than threads, several ride in one task. With the queue empty and
        a thread idle, take back jobs that wait in a task behind another."""
        dispatcher = self.dispatcher
        tasks: list[_Task] = []
        steal: list[_Attempt] = []
        with self._lock:
            self._pump_scheduled = False
            if self._stopping:
                return
            workers = dispatcher.workers
            threads = min(self._cluster_threads, workers)
            running = dispatcher.running
            # Once every thread of the cluster has work, refill in a batch, later.
            if workers - running >= self._refill_batch or running < self._cluster_threads:
                while True:
                    job = dispatcher.take_locked()
                    if job is None:
                        break
                    tasks.append(self._pack_locked(job, threads))
            if not tasks and not dispatcher.waiting_locked():
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

    def _pack_locked(self, job: Job[Any], threads: int) -> _Task:
        """A task for ``job`` (just taken: running), and, when more jobs wait than
        the cluster has threads, a share of them behind it: they stay queued (the
        pool's prefetch) until the worker reports that they began."""
        task = _Task(f"poolbench-{self._token}-{job.job_id}-{job.attempt}", job.priority)
        task.add(job, job.attempt, _BEGUN, None if job.timeout is None else job.started_at + job.timeout)
        policy = self._backlog
        # With this one taken, at least as many waiting as threads: a share of them.
        share = policy.share(1, self.dispatcher.waiting_locked(), threads)
        if share:
            priority = job.priority
            used = 0  # payload bytes behind the first job

            def fits(other: Job[Any]) -> bool:
                return other.priority == priority and policy.fits(payload_size(other.payload), used)

            for _ in range(share):
                nxt = self.dispatcher.prefetch_locked(fits)
                if nxt is None:
                    break
                used += payload_size(nxt.payload)
                task.add(nxt, nxt.attempt + 1, _PACKED, None)
                self._packed += 1
        self._inflight[task.key] = task
        return task

    def _submit(self, priority: int, tasks: list[_Task]) -> None:
        """Send tasks of one priority to the cluster, as one graph."""
        now = time.monotonic()
        entries = []
        with self._lock:  # payloads read under it: a job that ends meanwhile lets go of its own
            for task in tasks:
                head = task.slots[0]
                if head.abandoned:  # cancelled (or timed out) before it left: nothing of it runs
                    self._end_task_locked(task)
                    continue
                for slot in task.slots[1:]:
                    if slot.job.status is not _QUEUED:  # cancelled before it left
                        self._close_locked(slot)
            tasks = [task for task in tasks if not task.ended]
            for task in tasks:
                head = task.slots[0]
                job = head.job
                remaining = None if head.deadline is None else head.deadline - now
                pack: list[Entry] = [(job.job_id, head.attempt, head.deadline, remaining, None, job.payload)]
                pack += [
                    (s.job.job_id, s.attempt, None, None, s.job.timeout, s.job.payload)
                    for s in task.slots[1:]
                    if s.state is _PACKED
                ]
                entries.append(pack)
        if not tasks:
            return
        keys = [task.key for task in tasks]
        try:
            futures = self._client.map(
                run_pack,
                keys,
                entries,
                clock=clock_id(),
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
                self.dispatcher.finish(task.slots[0].job, task.slots[0].attempt, ERROR, exc)
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
        the task, ahead of Dask's report that the task finished (see run_pack)."""
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
        msg = decode(data)  # before the lock: it unpickles the value
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
            ended = self._end_slot_locked(slot, msg)
            nxt = None if next_id is None else task.by_id.get(next_id)
            if nxt is not None:
                self._skip_to_locked(task, nxt.index, lost)
                if nxt.state is _PACKED:
                    self._begin_locked(nxt, now if next_started is None else next_started, arm)
        self._arm(arm)
        if ended is not None:
            self.dispatcher.settle(slot.job, ended)
        self._settle_lost(lost)
        if next_id is None:
            self._pump()  # the task is about to end: its thread is free

    def _begin_locked(self, slot: _Attempt, started_at: float, arm: list[_Attempt]) -> None:
        """A job sent behind others began (at ``started_at``, on this machine's clock)."""
        slot.state = _BEGUN
        job = slot.job
        if self.dispatcher.started_locked(job, started_at):
            if job.timeout is not None:
                slot.deadline = started_at + job.timeout
                arm.append(slot)
        else:  # cancelled, and the cancel reached its worker too late: it runs there for nothing
            slot.abandoned = True
            slot.late = True  # whoever stops it sends the stop (see _stop_attempt, _stop_packed)
            self.dispatcher.add_abandoned_locked(1)

    def _skip_to_locked(self, task: _Task, index: int, lost: list[_Attempt]) -> None:
        """The task has gone past every slot before ``index`` that is still open: it
        skipped them (they had a tombstone), so none of them began."""
        for slot in task.slots[task.cursor : index]:
            if slot.state is _PACKED:
                self.dispatcher.give_back_locked(slot.job)  # taken back (the answer is on its way), or cancelled
            elif slot.state is _BEGUN and self.dispatcher.is_current(slot.job, slot.attempt):
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
            self.dispatcher.add_abandoned_locked(-1)
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
                self.dispatcher.give_back_locked(slot.job)  # no attempt used: it never began
            self._close_locked(slot)
        self._inflight.pop(task.key, None)
        if not self._inflight:
            self._idle.notify_all()

    def _arm(self, slots: list[_Attempt]) -> None:
        for slot in slots:
            if slot.deadline is not None:  # set for each, by _begin_locked
                self._deadlines.arm(slot, slot.deadline, slot.job, slot.attempt)
        with self._lock:
            ended = [slot for slot in slots if slot.state is not _BEGUN]
        for slot in ended:  # it ended meanwhile, maybe before it was armed
            self._deadlines.disarm(slot)

    def _end_slot_locked(self, slot: _Attempt, msg: Message) -> Ended | None:
        """End the slot's attempt with its decoded outcome (lock held); what
        ``dispatcher.settle`` needs, to call once the lock is released, or None."""
        job, attempt = slot.job, slot.attempt
        outcome, value = msg.outcome, msg.value
        if outcome == LATE:  # began past its deadline: timed out, without running
            outcome, value = TIMEOUT, self.dispatcher.timeout_error(job, attempt)
        elif outcome == SKIPPED:  # skipped there: settled already
            return None
        return self.dispatcher.end_locked(job, attempt, outcome, value)

    def _settle_lost(self, lost: list[_Attempt]) -> None:
        for slot in lost:
            err = PoolError(f"job {slot.job.job_id} (attempt {slot.attempt}): its Dask task ended without its outcome")
            self.dispatcher.finish(slot.job, slot.attempt, ERROR, err)

    async def _track(self, task: _Task) -> None:
        future = task.future
        failure: tuple[Outcome, Any] | None = None
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
        is_current = self.dispatcher.is_current
        return any(slot.state is _BEGUN and is_current(slot.job, slot.attempt) for slot in task.slots[task.cursor :])

    def _conclude(
        self,
        task: _Task,
        result: tuple[dict[int, bytes], list[int]] | None,
        failure: tuple[Outcome, Any] | None,
    ) -> None:
        """The task ended: settle what it ran and put back what it never began."""
        dispatcher = self.dispatcher
        kept = result[0] if result else {}
        # Decoded before the lock (it unpickles values); the slots are the loop's own.
        decoded = {
            slot.job.job_id: decode(kept[slot.job.job_id])
            for slot in task.slots[task.cursor :]
            if slot.job.job_id in kept
        }
        arm: list[_Attempt] = []
        ended: list[tuple[Job[Any], Ended]] = []
        lost: list[_Attempt] = []
        now = time.monotonic()
        with self._lock:
            for slot in task.slots[task.cursor :]:
                msg = decoded.get(slot.job.job_id)
                settled = None
                if msg is not None:
                    if slot.state is _PACKED:  # only without a worker to push from: it began unannounced
                        self._begin_locked(slot, now, arm)
                    # Each ends before the next begins (busy never counts both).
                    settled = self._end_slot_locked(slot, msg)
                elif slot.state is _BEGUN:
                    if failure is None:
                        lost.append(slot)
                    else:  # it was running when the task failed (its worker died, say)
                        kind, exc = failure
                        value = _crash_error(slot.job, slot.attempt, exc) if kind is CRASH else exc
                        settled = dispatcher.end_locked(slot.job, slot.attempt, kind, value)
                if settled is not None:
                    ended.append((slot.job, settled))
                if slot.state is not _PACKED:
                    self._close_locked(slot)
            self._end_task_locked(task)  # the packed ones go back, no attempt used
        for job, settled in ended:
            dispatcher.settle(job, settled)
        # A begun job with no outcome was skipped there (it was settled, then had a
        # tombstone), or its outcome is lost: the latter fails it.
        self._settle_lost([s for s in lost if dispatcher.is_current(s.job, s.attempt)])

    def _fetch(self, task: _Task) -> asyncio.Future[Any]:
        """The result of a finished task (None if it could not be fetched), from the
        next batch fetch: one ``gather`` for every task that ended meanwhile."""
        waiter = self._loop.create_future()
        self._to_fetch.append((task, waiter))
        if not self._fetching:
            self._fetching = True
            self._spawn(self._fetch_batches())
        return waiter

    async def _fetch_batches(self) -> None:
        batch: list[tuple[_Task, asyncio.Future[Any]]] = []
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

    def _lost_scheduler(self, exc: BaseException) -> None:
        """The client lost the scheduler, and with it every task: the pool is broken
        (every unfinished job fails, and later submits say why)."""
        with self._lock:
            if self._lost:
                return
            self._lost = True
        self.dispatcher.broken(
            exc, reason=f"pool {self.dispatcher.name} lost its Dask scheduler ({exc}); create a new pool"
        )

    # ------------------------------------------------------------ stopping one job

    def _on_deadline(self, job: Job[Any], attempt: int) -> None:
        if self.dispatcher.timed_out(job, attempt, preempted=True):
            self.stop_attempt(job, attempt)

    def preempted_locked(self, job: Job[Any]) -> None:
        slot = job.backend_slot
        if isinstance(slot, _Attempt) and slot.attempt == job.attempt and slot.state is _BEGUN and not slot.abandoned:
            slot.abandoned = True
            self.dispatcher.add_abandoned_locked(1)

    def stop_attempt(self, job: Job[Any], attempt: int) -> None:
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
                if s.state is _PACKED and not s.revoking and s.job.prefetched
            ]
            for s in behind:
                s.revoking = True
            self._revoking += len(behind)
        if behind:
            self._spawn(self._take_back(behind))

    def _wake(self) -> None:
        with self._lock:
            self.wake_locked()

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
            await self._client.run(stop_on_worker, items, False, on_error="ignore")
        except Exception:  # noqa: BLE001 - scheduler gone: the jobs are settled, the tasks end with their workers
            pass

    def _steal_locked(self, threads: int) -> list[_Attempt]:
        """The queue is empty and a thread of the cluster is idle: pick, from the
        tasks with most jobs waiting in them, the last of those jobs (one per idle
        thread), to take back (``Backlog.take_back``)."""
        idle = threads - len(self._inflight) - self._revoking
        if idle <= 0:
            return []
        backlogs = [
            [s for s in task.slots[task.cursor :] if s.state is _PACKED and not s.revoking and s.job.prefetched]
            for task in self._inflight.values()
        ]
        picks = Backlog.take_back(backlogs, idle)
        for slot in picks:
            slot.revoking = True
        self._revoking += len(picks)
        return picks

    async def _take_back(self, slots: list[_Attempt]) -> None:
        """Take jobs back from their tasks if they have not begun: a tombstone on
        every worker, and each worker says which of them began there. Those that
        did not go back to the queue (no attempt used); the others run where they are."""
        items = [(slot.key, slot.job.job_id) for slot in slots]
        began: set[tuple[str, int]] | None = None  # None: unknown on some worker
        try:
            replies = await self._client.run(stop_on_worker, items, True, on_error="return")
            if not any(isinstance(reply, BaseException) for reply in replies.values()):
                began = {(key, job_id) for reply in replies.values() for key, job_id in reply}
            # else unknown there: leave them; the task's reports settle them
        except Exception:  # noqa: BLE001
            began = None
        with self._lock:
            self._revoking -= len(slots)
            for slot, item in zip(slots, items, strict=False):
                slot.revoking = False
                if began is not None and item not in began and slot.state is _PACKED:
                    if slot.job.prefetched:
                        self._steals += 1
                    self.dispatcher.give_back_locked(slot.job)
                    self._close_locked(slot)

    # ------------------------------------------------------------ stopping the pool

    def stop(self, deadline: float | None) -> int:
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
        if self._topic is not None:
            try:  # the scheduler keeps a topic's latest events: drop this pool's outcomes
                client.unsubscribe_topic(self._topic)
                await asyncio.wait_for(client.run_on_scheduler(forget_topic, self._topic), _CLOSE_TIMEOUT)
            except Exception:  # noqa: BLE001 - best effort: at most 1000 small events stay behind
                pass
        await client.close(timeout=_CLOSE_TIMEOUT)
