"""The service's record of jobs: every live job, and a bounded window of finished ones.

::

    POST /jobs ─ add() ─▶ live {id: record}            (bounded by the pool: queue + workers + retrying)
                               │ job's done-callback: finish() (on the pool's thread)
                               ▼
                          finished, in finishing order  ─ evicted oldest first when over
                                                          max_jobs, max_bytes or max_age

A finished record keeps its result already serialized to JSON, so that its size is
known (``max_bytes`` counts those bytes) and ``GET /jobs/{id}`` does not serialize it
again. Eviction runs on every add, finish and lookup: no timer, no background task.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from pools import Job, JobStatus

QUEUED, RETRYING, RUNNING = JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = (
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.TIMED_OUT,
)

__all__ = ["STATUSES", "JobRecord", "JobStore"]

#: What GET /jobs/{id} reports. A job waiting out a retry back-off is "queued": it
#: waits for its next attempt, and "attempts" says how many it has had.
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")
_PUBLIC = {
    QUEUED: "queued",
    RETRYING: "queued",
    RUNNING: "running",
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    CANCELLED: "cancelled",
    TIMED_OUT: "timed_out",
}
# A live record's job as the pool sees it. The pool ends a job (its status) a moment
# before the job's done-callbacks run, finish() among them, which store its result:
# until then the job is shown running, so that a status and its result appear together.
_LIVE_PUBLIC = {QUEUED: "queued", RETRYING: "queued"}
_OVERHEAD = 400  # bytes a finished record costs besides its result (slots, strings)
_MAX_ERROR = 1000  # characters of an error message kept


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(max(0.0, seconds), 6)


class JobRecord:
    __slots__ = (
        "accepted_at",
        "attempts",
        "error",
        "finished_at",
        "finished_mono",
        "job",
        "job_id",
        "priority",
        "queue_wait",
        "result_json",
        "run_time",
        "size",
        "status",
        "type",
    )

    def __init__(self, job: Job, type_name: str) -> None:
        self.job_id = job.job_id
        self.type = type_name
        self.priority = job.priority
        self.job: Job | None = job  # dropped once finished: the result is kept, not the job
        self.status = "queued"
        self.result_json = b"null"
        self.error: str | None = None
        self.attempts = 0
        self.accepted_at = time.time()
        self.queue_wait: float | None = None
        self.run_time: float | None = None
        self.finished_mono = 0.0
        self.finished_at: float | None = None
        self.size = _OVERHEAD


def _timings(job: Job, now: float, *, finished: bool) -> tuple[float | None, float | None]:
    """(queue wait, run time) of the job's latest attempt, in seconds: for a running
    attempt its run time so far, for a waiting job its wait so far."""
    # A job stopped before its latest attempt started has a start older than its enqueue.
    enqueued, started = job.enqueued_at, job.started_at
    if started >= enqueued and started > 0:
        return started - enqueued, (now - started) if finished or job.status is RUNNING else None
    return (now - enqueued) if enqueued else None, None


class JobStore:
    """Thread-safe: ``add`` and lookups run on the event loop, ``finish`` on
    whichever pool thread settled the job."""

    def __init__(
        self,
        *,
        max_jobs: int = 10_000,
        max_age: float = 300.0,
        max_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_jobs = max_jobs
        self.max_age = max_age
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[int, JobRecord] = {}
        self._finished: collections.OrderedDict[int, JobRecord] = collections.OrderedDict()
        self._bytes = 0
        self.evicted = 0

    # ------------------------------------------------------------------ writes

    def add(self, job: Job, type_name: str) -> JobRecord:
        record = JobRecord(job, type_name)
        with self._lock:
            self._live[job.job_id] = record
            self._prune_locked(self._clock())
        return record

    def finish(self, job: Job) -> None:
        """The job's done-callback: move its record to the finished window."""
        now = self._clock()
        status = _PUBLIC.get(job.status, "failed")
        result, error = b"null", None
        if job.cancelled():
            status = "cancelled"
        else:
            exc = job.exception()
            if exc is None:
                try:
                    result = json.dumps(job.result(), separators=(",", ":"), allow_nan=False).encode()
                except (TypeError, ValueError, RecursionError) as e:  # NaN, or what JSON cannot hold
                    status, error = "failed", f"result is not JSON: {e}"
            else:
                error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        queue_wait, run_time = _timings(job, now, finished=True)
        with self._lock:
            record = self._live.pop(job.job_id, None)
            if record is None:  # never added (cannot happen: add() precedes the callback)
                return
            record.job = None
            record.status, record.result_json, record.error = status, result, error
            record.attempts = job.attempt
            record.queue_wait, record.run_time = queue_wait, run_time
            record.finished_mono, record.finished_at = now, time.time()
            record.size = _OVERHEAD + len(result) + len(error or "")
            self._finished[job.job_id] = record
            self._bytes += record.size
            self._prune_locked(now)

    def _prune_locked(self, now: float) -> None:
        finished = self._finished
        oldest_kept = now - self.max_age
        while finished:
            record = next(iter(finished.values()))
            if len(finished) <= self.max_jobs and self._bytes <= self.max_bytes and record.finished_mono >= oldest_kept:
                return
            finished.popitem(last=False)
            self._bytes -= record.size
            self.evicted += 1

    # ------------------------------------------------------------------ reads

    def live_job(self, job_id: int) -> Job | None:
        with self._lock:
            record = self._live.get(job_id)
            return None if record is None else record.job

    def type_of(self, job_id: int) -> str | None:
        """The job type of a job still kept, or None."""
        with self._lock:
            record = self._live.get(job_id) or self._finished.get(job_id)
            return None if record is None else record.type

    def live_jobs(self) -> list[Job]:
        with self._lock:
            return [r.job for r in self._live.values() if r.job is not None]

    def describe(self, job_id: int) -> bytes | None:
        """The JSON that GET /jobs/{id} returns, or None for an unknown or evicted id."""
        now = self._clock()
        with self._lock:
            self._prune_locked(now)
            record = self._live.get(job_id) or self._finished.get(job_id)
            if record is None:
                return None
            job = record.job
            if job is not None:  # live: read the pool's view of it
                status = _LIVE_PUBLIC.get(job.status, "running")
                queue_wait, run_time = _timings(job, now, finished=False)
                attempts = job.attempt
                result, error, finished_at = b"null", None, None
            else:
                status, queue_wait, run_time = record.status, record.queue_wait, record.run_time
                attempts, result, error, finished_at = (
                    record.attempts,
                    record.result_json,
                    record.error,
                    record.finished_at,
                )
            head = {
                "job_id": record.job_id,
                "type": record.type,
                "status": status,
                "priority": record.priority,
                "attempts": attempts,
                "queue_wait": _round(queue_wait),
                "run_time": _round(run_time),
                "accepted_at": round(record.accepted_at, 6),
                "finished_at": None if finished_at is None else round(finished_at, 6),
                "error": error,
            }
        # The result is kept serialized; splice it in rather than parse it back.
        return json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"result":' + result + b"}"

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {
                "live": len(self._live),
                "retained": len(self._finished),
                "retained_bytes": self._bytes,
                "evicted": self.evicted,
            }
