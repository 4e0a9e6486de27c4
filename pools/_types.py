"""The values a pool takes and gives: options (``Retry``), snapshots (``PoolStats``,
``ShutdownReport``), a job's status (``JobStatus``), what a backend can do
(``Capabilities``), and the checks that turn a bad option into an error naming it."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .exceptions import InvalidArgument

__all__ = [
    "LIFECYCLE_OPTIONS",
    "Capabilities",
    "Ended",
    "JobStatus",
    "Outcome",
    "PoolStats",
    "Retry",
    "RunningJob",
    "ShutdownReport",
    "WorkerOptions",
    "check_int",
    "check_number",
]


class JobStatus(enum.StrEnum):
    """Where a job is in its life. A ``str`` (``JobStatus.QUEUED == "queued"``), so that
    reprs, JSON and the HTTP service read it as a word; each value is a singleton, so
    the pool compares them with ``is``."""

    QUEUED = "queued"  #: waiting for a worker (or sent ahead to one, not begun)
    RUNNING = "running"
    RETRYING = "retrying"  #: waiting out a retry back-off: holds no worker
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})


class Outcome(enum.StrEnum):
    """How one attempt ended, as a backend reports it to its dispatcher."""

    OK = "ok"  #: returned a value
    ERROR = "error"  #: raised (the exception is the value)
    TIMEOUT = "timeout"  #: ran past its deadline and was stopped (a JobTimeout is the value)
    CRASH = "crash"  #: its worker died under it (a WorkerCrashed is the value)


#: What ``Dispatcher.end_locked`` returns, for ``Dispatcher.settle``: how the attempt
#: ended, its value, and the back-off before its retry (None: it ended for good).
Ended = tuple[Outcome, Any, "float | None"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do: one frozen value, read without side effects
    (``pool.capabilities``). The conformance suite skips what a backend cannot do,
    with ``no_crash_recovery`` (or the default sentence) as the reason."""

    #: "callables" (plain functions) or "coroutines" (coroutine functions)
    runs: Literal["callables", "coroutines"]
    #: a running job can be stopped for real (kill, task cancel), not only told to stop
    stops_running_jobs: bool
    #: a crashing job fails alone with WorkerCrashed, and its worker is replaced
    survives_crashes: bool
    #: the submitter's contextvars are visible in the job
    carries_contextvars: bool
    #: WorkerCrashed names the dead worker's exit code and signal
    reports_exit_status: bool = True
    #: why crashes are not survived, in a sentence (when ``survives_crashes`` is False)
    no_crash_recovery: str | None = None
    #: the worker lifecycle options (``LIFECYCLE_OPTIONS``) the backend honours
    lifecycle: frozenset[str] = frozenset()
    #: why each other lifecycle option does not apply: ``((option, reason), ...)``
    lifecycle_not_applicable: tuple[tuple[str, str], ...] = ()
    #: ``Pool.map`` sends several items as one job (``pools._batch``): a job's round
    #: trip to its worker costs far more than a small call (jobs cross to another process)
    batches_map: bool = False

    def why_not(self, option: str) -> str | None:
        """None if the backend honours lifecycle ``option``, else why not, in a sentence."""
        if option in self.lifecycle:
            return None
        for name, reason in self.lifecycle_not_applicable:
            if name == option:
                return reason
        return "the backend does not declare it in its capabilities (Capabilities.lifecycle)"


#: the pool options about workers' lives, which a backend honours or refuses (``Capabilities``)
LIFECYCLE_OPTIONS = ("initializer", "max_tasks_per_worker", "max_memory_per_worker", "min_workers", "idle_timeout")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """The worker lifecycle options of a pool, checked, as its backend reads them
    (``dispatcher.options``): ``initializer(*initargs)`` runs once in each worker
    before its first job; a worker is replaced after ``max_tasks_per_worker`` jobs,
    or after a job that leaves it above ``max_memory_per_worker`` bytes of RSS;
    workers above ``min_workers`` exit after ``idle_timeout`` seconds without a job
    (``min_workers`` None: a fixed set of workers)."""

    initializer: Any = None
    initargs: tuple[Any, ...] = ()
    max_tasks_per_worker: int | None = None
    max_memory_per_worker: int | None = None
    min_workers: int | None = None
    idle_timeout: float | None = None


def check_number(name: str, value: Any, *, minimum: float, inclusive: bool, none_ok: bool) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}")
    ok = value >= minimum if inclusive else value > minimum
    if not ok or math.isnan(value) or math.isinf(value):
        relation = ">=" if inclusive else ">"
        raise InvalidArgument(f"{name} must be finite and {relation} {minimum}, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Retry:
    """How to retry a failed job: up to ``attempts`` attempts in all (the first
    included), waiting ``backoff * 2**(n-1)`` seconds before attempt ``n+1``, capped
    at ``max_backoff``; with ``jitter`` the wait is drawn uniformly from
    [wait/2, wait] ("equal jitter"), so that retries of many jobs spread out.
    Only exceptions that are instances of ``on`` are retried; a timeout
    (``JobTimeout``) and a crash (``WorkerCrashed``) are exceptions like any other,
    so the default ``on=(Exception,)`` retries them too.
    """

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 2.0
    jitter: bool = True
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        check_int("Retry.attempts", self.attempts, minimum=1)
        check_number("Retry.backoff", self.backoff, minimum=0, inclusive=True, none_ok=False)
        check_number("Retry.max_backoff", self.max_backoff, minimum=0, inclusive=True, none_ok=False)
        if self.max_backoff < self.backoff:
            raise InvalidArgument(
                f"Retry.max_backoff ({self.max_backoff!r}) must be >= Retry.backoff ({self.backoff!r})"
            )
        on = self.on if isinstance(self.on, tuple) else (self.on,)
        for cls in on:
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                raise InvalidArgument(f"Retry.on must hold exception classes, got {cls!r}")
        object.__setattr__(self, "on", on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = min(self.max_backoff, self.backoff * (2.0 ** (attempt - 1)))
        if self.jitter:
            wait = random.uniform(wait / 2, wait)
        return wait


def percentiles(samples: Iterable[float]) -> tuple[float | None, float | None, float | None]:
    data = sorted(samples)
    if not data:
        return (None, None, None)
    n = len(data)

    def pick(q: float) -> float:  # nearest-rank: a value that really occurred
        return data[min(n - 1, max(0, math.ceil(q * n) - 1))]

    return (pick(0.50), pick(0.95), pick(0.99))


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A consistent snapshot of a pool, taken under its lock.

    Gauges: ``workers`` (the most jobs that may run at once: the size, which
    ``resize`` changes), ``alive`` (workers alive now), ``busy`` (jobs running now), ``queued`` (waiting for a
    worker), ``retrying`` (waiting out a retry back-off), ``abandoned`` (thread
    backend: threads still running a job that was timed out or cancelled).
    Counters since start: ``submitted`` (accepted jobs), the four terminal states,
    ``rejected`` (``QueueFull`` raised; never submitted), ``retried`` (attempts
    scheduled again), ``crashed`` (worker processes that died under a job),
    ``recycled`` (workers replaced after ``max_tasks_per_worker`` jobs or above
    ``max_memory_per_worker``).
    Percentiles (seconds, ``None`` before any sample) cover the latest 8192
    attempts: queue wait (enqueue to start) and run time (start to end).
    """

    backend: str
    workers: int
    busy: int
    queued: int
    retrying: int
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    timed_out: int
    rejected: int
    retried: int
    crashed: int
    abandoned: int
    queue_wait_p50: float | None
    queue_wait_p95: float | None
    queue_wait_p99: float | None
    run_time_p50: float | None
    run_time_p95: float | None
    run_time_p99: float | None
    uptime: float
    #: workers replaced by recycling (``max_tasks_per_worker``, ``max_memory_per_worker``)
    recycled: int = 0
    #: workers alive now that count toward the size (below ``workers`` while idle ones
    #: have exited, see ``min_workers``; a worker retiring after a shrink or its last
    #: recycled job is not counted; ``workers`` for a backend that does not count them)
    alive: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.timed_out

    def conserved(self) -> bool:
        """The conservation law: every accepted job is in exactly one state."""
        return self.submitted == self.finished + self.queued + self.busy + self.retrying


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What ``shutdown()`` did. ``cancelled`` lists the ids of jobs it cancelled
    while they waited (queued or in a retry back-off); ``killed`` those it stopped
    while running, when the deadline passed (process: worker killed; asyncio: task
    cancelled; thread: context cancelled and thread abandoned). ``abandoned_threads``
    counts threads still running user code when it returned (thread backend, jobs
    that ignore their context). ``complete`` is False for a ``wait=False`` report."""

    backend: str
    succeeded: int
    failed: int
    timed_out: int
    cancelled: tuple[int, ...] = field(default=())
    killed: tuple[int, ...] = field(default=())
    abandoned_threads: int = 0
    duration: float = 0.0
    complete: bool = True


@dataclass(frozen=True, slots=True)
class RunningJob:
    """One running attempt, as ``Pool.running_jobs()`` sees it (a snapshot)."""

    job_id: int
    #: 1 for the first attempt, 2 for the first retry...
    attempt: int
    #: the job's function, qualified name (``module.qualname``)
    function: str
    #: when the attempt began (``time.monotonic()``)
    started_at: float
    #: seconds it had run when the snapshot was taken
    age: float
