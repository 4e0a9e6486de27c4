"""The worker side of the "dask" backend: what runs inside the Dask workers.

A Dask task of the pool is ``run_pack(key, entries, ...)``: it runs its jobs in
order, each with its own ``current_context()``, and after each pushes one event to
the pool through the scheduler — the job's outcome message (``pools.remote``) and
which job of the task began next — so that the pool settles a job without waiting
for the task to end::

    run_pack ──▶ _begin_next (tombstone? skip it; else register its context)
       │            │
       │            ▼
       │        _job_outcome: fn(*args) ─▶ remote.encode_result / encode_failure
       │            │                      (encode_skipped(late=True): began past its deadline)
       │            ▼
       └──── _push: [key, job id, started, outcome, next job id, next started]
                    on the topic the pool subscribed to (flushed before the next job
                    begins where the pool recovers from crashed workers)

    stop_on_worker (client.run on every worker): a tombstone for a job not begun
        here, or its context cancelled if it runs here; says which of them began

Every worker of a process shares the registries below (task keys are unique per pool
and attempt). The functions that Dask calls here (``run_pack``, ``stop_on_worker``,
``forget_topic``) are pickled by reference: the workers import this module, so
poolbench must be importable on every worker.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import threading
import time
from typing import Any

import cloudpickle
from distributed.diagnostics.plugin import WorkerPlugin

from ..lowlevel import JobContext, cancel_context, reset_current_context, set_current_context
from ..remote import encode_failure, encode_result, encode_skipped

#: one job of a task: (job_id, attempt, deadline, remaining, timeout, payload); see run_pack
Entry = tuple[int, int, float | None, float | None, float | None, bytes]

__all__ = ["PUSH_LIMIT", "Initializer", "clock_id", "forget_topic", "run_pack", "stop_on_worker"]

# Outcomes up to this size ride to the pool as a scheduler event (see run_pack); the
# scheduler keeps the latest 1000 events of a topic, so this bounds what it holds per pool.
PUSH_LIMIT = 8 * 1024
# Seconds a task waits for a pushed event to be written before the next job begins (flush).
_FLUSH_TIMEOUT = 10.0
_TOMBSTONE_TTL = 600.0  # seconds a worker remembers a cancel for a task it has not started

_registry_lock = threading.Lock()
_running: dict[tuple[str, int], JobContext] = {}  # (task key, job id) -> context of a job running here
_begun: dict[str, set[int]] = {}  # task key -> ids of its jobs begun here, while the task runs
# Recently ended tasks -> ids of their jobs begun here: a cancel or take-back that arrives
# after its task ended must not leave a tombstone that claims the job never began.
_ended: collections.OrderedDict[str, set[int]] = collections.OrderedDict()
_ENDED_KEPT = 4096
_cancels: collections.OrderedDict[tuple[str, int], float] = collections.OrderedDict()  # tombstones


@functools.lru_cache(maxsize=1)
def clock_id() -> str | None:
    """Identifies this machine's ``time.monotonic()`` clock (Linux: the boot id),
    so that a worker on the same machine uses the pool's deadline exactly."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def run_pack(
    key: str,
    entries: list[Entry],
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
    ``PUSH_LIMIT`` is returned instead, and the task stops there (the jobs after
    it never begin: the pool puts them back in its queue). Returns (outcomes not
    pushed, ids of the jobs begun).

    With ``flush`` (the pool recovers from crashed workers) each event has left this
    process, written on the worker's connection to the scheduler, before the next
    job begins: if that job kills the process (os._exit, a segfault, the OOM killer),
    the scheduler has the event before it learns of the death, so the pool knows
    which job was running (see _push). Without it, the event waits up to 2 ms in the
    worker's batched stream: a crash then ends the cluster anyway (threads of the
    pool's own LocalCluster), or crash recovery does not apply."""
    same_clock = clock is not None and clock == clock_id()
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
            if worker is not None and len(out) > PUSH_LIMIT:
                kept[job_id] = out
                break  # fetched when the task ends: begin nothing more
            nxt = _begin_next(key, entries, i + 1, begun, same_clock)
            if worker is None or topic is None:  # (both or neither)
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


def _push(worker: Any, topic: str, msg: list[Any], flush: bool) -> None:
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
    sent: concurrent.futures.Future[None] = concurrent.futures.Future()
    worker.loop.add_callback(_write_event, worker, {"op": "log-event", "topic": topic, "msg": msg}, sent)
    try:
        sent.result(_FLUSH_TIMEOUT)
    except concurrent.futures.TimeoutError:
        if sent.cancel():  # the worker's loop never got to it: it will not be sent
            raise
        # It got to it: the event is in the stream's buffer, ahead of what follows, and
        # the kernel has not taken it yet (a stalled scheduler): go on.


async def _write_event(worker: Any, msg: dict[str, Any], sent: concurrent.futures.Future[None]) -> None:
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
    entries: list[Entry],
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
            elif not same_clock and remaining is not None:  # (set with the deadline)
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


def _job_outcome(key: str, entry: Entry, ctx: JobContext) -> bytes:
    """Run one begun job; its outcome message (``pools.remote``), as the process
    backend's workers send it: ``encode_skipped(late=True)`` if its deadline had
    passed when its turn came."""
    job_id, attempt, payload = entry[0], entry[1], entry[5]
    try:
        if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
            return encode_skipped(job_id, attempt, late=True)
        token = set_current_context(ctx)
        fn = args = value = None
        try:
            fn, args = cloudpickle.loads(payload)
            value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - goes to the job's caller, never kills the worker
            return encode_failure(job_id, attempt, exc)
        finally:
            reset_current_context(token)
            del fn, args
        return encode_result(job_id, attempt, value)
    finally:
        with _registry_lock:
            _running.pop((key, job_id), None)


def stop_on_worker(items: list[tuple[str, int]], revoke: bool) -> list[tuple[str, int]]:
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
        cancel_context(ctx)
    return began


def forget_topic(topic: str, dask_scheduler: Any = None) -> None:
    """On the scheduler: drop the events it keeps for ``topic`` (a pool's pushed outcomes)."""
    broker = getattr(dask_scheduler, "_broker", None)
    if broker is not None:
        broker.truncate(topic)


class Initializer(WorkerPlugin):
    """Runs a pool's ``initializer(*initargs)`` once in each Dask worker, those that
    join later included (a worker plugin); ``payload`` is the pair, cloudpickled. A
    failure on the workers present when the pool connects reaches the pool, which
    breaks (``PoolBroken``)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def setup(self, worker: Any) -> None:
        initializer, initargs = cloudpickle.loads(self.payload)
        initializer(*initargs)
