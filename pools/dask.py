"""The "dask" backend: plain callables on a Dask distributed cluster, at most W at once.

Data flow::

    submit() ─cloudpickle (fn, args)─▶ Pool heap ─(call_soon_threadsafe: _pump)─▶ the pool's loop thread
                                          ▲                                        │ take ≤ W jobs (refill in
                                          │ _requeue (after a retry back-off)      │ batches once every thread
                                          │                                        │ has work); per priority one
                                          │                                        │ client.map(_run_attempt,
                                          │                                        │   key=<pool>-<job>-<attempt>,
                                          │                                        │   priority=p, pure=False)
                                          │                                        ▼
                                          │                Dask scheduler ──▶ a worker thread: _run_attempt sets
                                          │                                   current_context(), runs fn(*args),
                                          │                                   pushes the pickled outcome (≤ 8 KiB)
                                          │                                   as an event, and returns it
                                          │                                        │
                               _finish_attempt() ◀── _track(): Dask reports the task ended; its outcome is
                                                     the pushed one, or one batched gather fetches it
    Timer thread ── deadline ──▶ JobTimeout now; the task knows its deadline too, and is
                                 *abandoned* (stats().abandoned) until Dask reports it finished
    job.cancel() ─▶ _stop_running ─▶ client.run(_cancel_on_worker, key) on every worker: the
                                      task's context is cancelled, or the task is skipped if it
                                      has not started

The bounded queue, priorities, admission, retries, statistics and shutdown are the
shared client-side machinery of ``_base.Pool``; this module only moves at most
``workers`` jobs at a time from the heap to the cluster and settles each attempt
when its Dask future completes. ``workers`` is how many jobs are on the cluster at
once, running or waiting there for a thread (``stats().busy`` counts them); on a
cluster given by address it defaults to 4 per thread of the cluster, so that a
thread that finishes a task finds the next one on its worker instead of waiting for
the pool's round trip.

What a job costs the scheduler is what a task of ``client.map`` costs, plus as
little as the pool can: jobs go in one graph per refill (a refill waits for half the
spare window once every thread has work), and a small outcome comes back as an
event on the scheduler's stream to the client, ahead of the report that the task
finished, so it needs no ``gather`` round trip; a large one is fetched with every
other that ended meanwhile, in one ``gather``.

Dask runs its side of the work on the pool's own event loop thread (an asynchronous
``Client``), so no Dask call ever blocks a submitter, and no thread is made per job.

Dask cannot stop a task that is already running on a worker. So a timed-out or
cancelled job ends for its caller at once (``JobTimeout`` / cancelled), the task's
``current_context()`` is cancelled — it carries the deadline, and a cancel is sent to
the workers — and the task is counted in ``stats().abandoned`` until Dask reports
it finished. A job that never looks at its context keeps its worker thread until it
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
from typing import Any, Callable

import cloudpickle
from distributed import Client
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from . import _base
from ._base import CRASH, ERROR, OK, Job, Pool
from ._context import JobContext, _current
from ._process_worker import _dump_failure
from .exceptions import InvalidArgument, InvalidCallable, PoolBroken, PoolError, RemoteTraceback, WorkerCrashed
from ._loop import run_private_loop

__all__ = ["DaskPool"]

_START_TIMEOUT = 60.0  # seconds for the pool's own LocalCluster process to serve
_STOP_WAIT = 5.0  # shutdown(timeout=None): seconds that abandoned tasks get to end
_CLOSE_TIMEOUT = 5.0  # seconds for the client to say goodbye to the scheduler
_TOMBSTONE_TTL = 600.0  # seconds a worker remembers a cancel for a task it has not started
# Outcomes up to this size ride to the pool as a scheduler event (see _run_attempt); the
# scheduler keeps the latest 1000 events of a topic, so this bounds what it holds per pool.
_PUSH_LIMIT = 8 * 1024
# Default ``workers`` on a cluster given by address: jobs on the cluster per thread of it.
_IN_FLIGHT_PER_THREAD = 4

# Outcome markers of an attempt that did not run its function (see _run_attempt).
_LATE = "late"  # started after its deadline
_CANCELLED = "cancelled"  # cancelled before it started


# ------------------------------------------------------------------ worker side
#
# These run inside the Dask workers (poolbench must be importable there). Every
# worker of a process shares them; task keys are unique per pool and attempt.

_registry_lock = threading.Lock()
_running: dict[str, JobContext] = {}  # key -> context of the attempt running here
_cancels: collections.OrderedDict[str, float] = collections.OrderedDict()  # key -> when cancelled


@functools.lru_cache(maxsize=1)
def _clock_id() -> str | None:
    """Identifies this machine's ``time.monotonic()`` clock (Linux: the boot id),
    so that a worker on the same machine uses the pool's deadline exactly."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _run_attempt(
    key: str, payload: bytes, job_id: int, attempt: int, deadline: float | None, remaining: float | None,
    *, clock: str | None, topic: str | None = None,
) -> bytes:
    """Run one attempt in a Dask worker; return its pickled outcome
    ``(job_id, attempt, ok, value, traceback_text)``, as the process backend does.
    An outcome of at most ``_PUSH_LIMIT`` bytes is also pushed to the pool as an event
    on ``topic``, ahead of Dask's report that the task finished, so that the pool
    needs no round trip to fetch it (the returned copy is the fallback)."""
    out = _attempt_outcome(key, payload, job_id, attempt, deadline, remaining, clock)
    if topic is not None and len(out) <= _PUSH_LIMIT:
        try:
            from distributed import get_worker

            get_worker().log_event(topic, [key, out])
        except Exception:  # noqa: BLE001 - not in a worker, say: the pool fetches the returned copy
            pass
    return out


def _attempt_outcome(
    key: str, payload: bytes, job_id: int, attempt: int, deadline: float | None, remaining: float | None,
    clock: str | None,
) -> bytes:
    if deadline is not None and (clock is None or clock != _clock_id()):
        deadline = time.monotonic() + remaining  # another machine: another clock
    ctx = JobContext(job_id, attempt, deadline)
    with _registry_lock:
        if _cancels.pop(key, None) is not None:
            return pickle.dumps((job_id, attempt, None, _CANCELLED, None))
        _running[key] = ctx
    try:
        if deadline is not None and time.monotonic() >= deadline:
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
        try:
            return pickle.dumps((job_id, attempt, True, value, None), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # noqa: BLE001
            return _dump_failure(
                job_id,
                attempt,
                pickle.PicklingError(f"job {job_id} returned {type(value).__name__!s} that cannot be pickled: {err}"),
            )
    finally:
        with _registry_lock:
            _running.pop(key, None)


def _cancel_on_worker(key: str) -> None:
    """Cancel attempt ``key`` on this worker (run by ``client.run`` on the worker's
    event loop): its context if it runs here, or a note that skips it if it starts later."""
    with _registry_lock:
        ctx = _running.get(key)
        if ctx is None:
            now = time.monotonic()
            _cancels[key] = now
            while _cancels and next(iter(_cancels.values())) < now - _TOMBSTONE_TTL:
                _cancels.popitem(last=False)
    if ctx is not None:
        ctx._cancel()


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
                raise PoolBroken(f"the pool's LocalCluster process exited with code {code} before serving (see its output)")
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


class _Attempt:
    """One attempt in flight on the cluster (loop thread; flags under the pool lock)."""

    __slots__ = ("job", "attempt", "key", "deadline", "future", "abandoned", "ended")

    def __init__(self, job: Job, attempt: int, key: str, deadline: float | None) -> None:
        self.job = job
        self.attempt = attempt
        self.key = key
        self.deadline = deadline
        self.future: Any = None  # the Dask future, once submitted
        self.abandoned = False  # settled from outside while the task may still run
        self.ended = False  # Dask reported the task finished (or it never ran)


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
        if address is not None and (not isinstance(address, str) or not address):
            raise InvalidArgument(f"address must be a scheduler address like 'tcp://host:8786', or None; got {address!r}")
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
        self._inflight: dict[str, _Attempt] = {}
        self._idle = threading.Condition(self._lock)  # shutdown waiting for abandoned tasks
        self._background: set[asyncio.Task] = set()
        self._pump_scheduled = False
        self._cluster_threads = self.workers  # of a cluster given by address: learnt when connecting
        self._refill_batch = 1
        self._pushed: dict[str, bytes] = {}  # key -> outcome pushed by a task still tracked
        self._to_fetch: list[tuple[_Attempt, asyncio.Future]] = []  # finished tasks to fetch
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
            except (OSError, concurrent.futures.TimeoutError, asyncio.TimeoutError) as err:
                connect.cancel()
                raise PoolBroken(f"pool {self.name} cannot reach the Dask scheduler at {address}: {err}") from err
        except BaseException:
            self._teardown(None)
            raise

    def _run_loop(self, ready: threading.Event) -> None:
        run_private_loop(self._loop, ready)

    async def _connect(self, address: str) -> None:
        client = await Client(
            address, asynchronous=True, timeout=self.connect_timeout, set_as_default=False, name=self.name
        )
        self._client = client
        # Outcomes pushed by the tasks (see _run_attempt); subscribed before any task
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

    def _on_enqueued_locked(self) -> None:
        if not self._pump_scheduled and not self._stopping:
            self._pump_scheduled = True  # one pump serves every job queued meanwhile
            self._loop.call_soon_threadsafe(self._pump)

    def _check_blocking_allowed(self) -> None:
        if threading.current_thread() is self._thread:
            raise PoolError(
                "the queue is full, and blocking here would stall the thread that delivers this pool's "
                "results (done-callbacks run on it): pass overflow='reject' or wait=0, or submit from "
                "another thread"
            )

    def _check_blocking_shutdown(self, wait: bool) -> None:
        if wait and self._report is None and threading.current_thread() is getattr(self, "_thread", None):
            raise PoolError(
                "shutdown(wait=True) in a done-callback would block the thread that delivers this "
                "pool's results: call shutdown(wait=False) there"
            )

    # ------------------------------------------------------------ dispatch (loop)

    def _pump(self) -> None:
        """Move waiting jobs to the cluster, at most ``workers`` running at once."""
        taken: list[_Attempt] = []
        with self._lock:
            self._pump_scheduled = False
            free = self.workers - self._running
            if free < self._refill_batch and self._running >= self._cluster_threads:
                return  # every thread of the cluster has work: refill in a batch, later
            while not self._stopping:
                job = self._take_locked()
                if job is None:
                    break
                deadline = None if job.timeout is None else job._started_at + job.timeout
                slot = _Attempt(job, job.attempt, f"poolbench-{self._token}-{job.job_id}-{job.attempt}", deadline)
                job.backend_slot = slot
                self._inflight[slot.key] = slot
                taken.append(slot)
        if not taken:
            return
        by_priority: dict[int, list[_Attempt]] = {}
        for slot in taken:
            if slot.deadline is not None:
                self._timer.call_at(slot.deadline, self._on_deadline, slot.job, slot.attempt)
            by_priority.setdefault(slot.job.priority, []).append(slot)
        for priority, slots in by_priority.items():
            self._submit(priority, slots)

    def _submit(self, priority: int, slots: list[_Attempt]) -> None:
        """Send attempts of one priority to the cluster, as one graph."""
        with self._lock:
            for slot in slots:
                if slot.abandoned:  # cancelled before it left: it never runs
                    self._end_locked(slot)
            slots = [slot for slot in slots if not slot.ended]
        if not slots:
            return
        now = time.monotonic()
        keys = [slot.key for slot in slots]
        try:
            futures = self._client.map(
                _run_attempt,
                keys,
                [slot.job._payload for slot in slots],
                [slot.job.job_id for slot in slots],
                [slot.attempt for slot in slots],
                [slot.deadline for slot in slots],
                [None if slot.deadline is None else slot.deadline - now for slot in slots],
                clock=_clock_id(),
                topic=self._topic,
                key=keys,
                pure=False,
                priority=priority,
            )
        except Exception as exc:  # noqa: BLE001 - the client refused them (closed, say): these jobs fail
            with self._lock:
                for slot in slots:
                    self._end_locked(slot)
            for slot in slots:
                self._finish_attempt(slot.job, slot.attempt, ERROR, exc)
            return
        for slot, future in zip(slots, futures):
            slot.future = future
            self._spawn(self._track(slot))

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _track(self, slot: _Attempt) -> None:
        job, attempt, future = slot.job, slot.attempt, slot.future
        try:
            # Wait for Dask's report that the task ended: it comes on the client's
            # stream, without a round trip. Only then fetch the outcome, in a batch
            # with every other task that ended meanwhile (see _fetch_batches).
            await future.exception()
            data = None
            if future.status == "finished":
                data = self._pushed.pop(slot.key, None)
                if data is None:
                    data = await self._fetch(slot)
            if data is None:  # it failed or was cancelled, or the batch could not fetch it
                data = await future  # raises Dask's error at once; else one fetch of its own
        except KilledWorker as exc:
            outcome, value = CRASH, self._crash_error(job, attempt, exc)
        except FutureCancelledError as exc:
            if exc.reason == "scheduler-connection-lost":
                self._lost_scheduler(exc)
            outcome, value = ERROR, exc  # else cancelled by someone else (client.restart, say)
        except Exception as exc:  # noqa: BLE001 - Dask could not run or return it: this job fails
            outcome, value = ERROR, exc
        else:
            outcome, value = self._decode(job, attempt, data)
        finally:
            slot.future = future = None  # releases the task's result on the cluster
            self._pushed.pop(slot.key, None)
            with self._lock:
                self._end_locked(slot)
        if outcome is _LATE:
            self._settle_timeout(job, attempt, preempted=False)
        elif outcome is not None:
            self._finish_attempt(job, attempt, outcome, value)
        self._wake()

    def _on_pushed(self, event: tuple[float, Any]) -> None:
        """An outcome pushed by a task (loop thread), usually just before Dask reports
        the task finished; kept only while its attempt is tracked."""
        try:
            key, data = event[1]
        except (TypeError, ValueError):
            return
        if key in self._inflight:
            self._pushed[key] = data

    def _fetch(self, slot: _Attempt) -> asyncio.Future:
        """The outcome of a finished task (None if it could not be fetched), from
        the next batch fetch: one ``gather`` for every task that ended meanwhile."""
        waiter = self._loop.create_future()
        self._to_fetch.append((slot, waiter))
        if not self._fetching:
            self._fetching = True
            self._spawn(self._fetch_batches())
        return waiter

    async def _fetch_batches(self) -> None:
        batch: list[tuple[_Attempt, asyncio.Future]] = []
        try:
            while self._to_fetch:
                batch, self._to_fetch = self._to_fetch, []
                try:
                    data = await self._client.gather(
                        {slot.key: slot.future for slot, _ in batch}, errors="skip"
                    )
                except Exception:  # noqa: BLE001 - each task is then asked for on its own
                    data = {}
                for slot, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(data.get(slot.key))
                batch = []
        finally:
            self._fetching = False
            for _, waiter in batch + self._to_fetch:  # cancelled (teardown)
                waiter.cancel()
            self._to_fetch = []

    def _end_locked(self, slot: _Attempt) -> None:
        if slot.ended:
            return
        slot.ended = True
        self._inflight.pop(slot.key, None)
        if slot.abandoned:
            self._abandoned -= 1
        if not self._inflight:
            self._idle.notify_all()

    def _decode(self, job: Job, attempt: int, data: bytes) -> tuple[Any, Any]:
        try:
            _, _, ok, value, tb = pickle.loads(data)
        except Exception as err:  # noqa: BLE001 - a result this process cannot rebuild fails its job only
            exc = pickle.UnpicklingError(f"job {job.job_id} returned a result that cannot be unpickled here: {err!r}")
            exc.__cause__ = err
            return ERROR, exc
        if ok:
            return OK, value
        if ok is None:  # the task did not run its function
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

    # ------------------------------------------------------------ stopping one attempt

    def _on_deadline(self, job: Job, attempt: int) -> None:
        if self._settle_timeout(job, attempt, preempted=True):
            self._stop_running(job, attempt)

    def _preempted_locked(self, job: Job) -> None:
        slot = job.backend_slot
        if isinstance(slot, _Attempt) and slot.attempt == job.attempt and not slot.ended and not slot.abandoned:
            slot.abandoned = True
            self._abandoned += 1

    def _stop_running(self, job: Job, attempt: int) -> None:
        slot = job.backend_slot
        try:
            self._loop.call_soon_threadsafe(self._stop_attempt, slot, attempt)
        except RuntimeError:  # the loop is closed: the pool is stopped already
            pass

    def _stop_attempt(self, slot: Any, attempt: int) -> None:
        if isinstance(slot, _Attempt) and slot.attempt == attempt and not slot.ended and slot.future is not None:
            # A timed-out task already knows its deadline; a cancel must be sent.
            if slot.deadline is None or time.monotonic() < slot.deadline:
                self._spawn(self._send_cancel(slot.key))
        self._wake()  # its worker slot is free for the next job

    def _wake(self) -> None:
        with self._lock:
            self._on_enqueued_locked()

    async def _send_cancel(self, key: str) -> None:
        try:
            await self._client.run(_cancel_on_worker, key, on_error="ignore")
        except Exception:  # noqa: BLE001 - scheduler gone: the job is settled, the task ends with its worker
            pass

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

    def _teardown(self, left: list[_Attempt] | None) -> int:
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
            for slot in left or ():
                if self._cluster is None:
                    still_running += 1
                else:
                    self._end_locked(slot)
        return still_running

    async def _disconnect(self, left: list[_Attempt]) -> None:
        client = self._client
        if client is None:
            return
        futures = [slot.future for slot in left if slot.future is not None]
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
