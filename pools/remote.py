"""What backends whose workers run in other processes share (the process and Dask
backends): the outcome message of one attempt, encoded on the worker's side and
decoded on the pool's, and the backlog policy — how many waiting jobs to send ahead
to a worker, and which to take back when another worker is idle.

An outcome message is a small header, ``(job id, attempt, kind)`` packed in 13
bytes, and a pickled body: the value for ``OK``, ``(pickled exception, traceback
text)`` for ``ERROR``, nothing for a job the worker skipped (``SKIPPED``: it was
cancelled or taken back before it began; ``LATE``: its deadline had passed when its
turn came). The header is readable even when the body is not, so a result that the
pool cannot unpickle fails its own job, by id.
"""

from __future__ import annotations

import pickle
import struct
import traceback
from collections.abc import Sequence
from typing import Any, Final, Literal, NamedTuple, TypeVar

from ._types import Outcome, check_int, check_number
from .exceptions import RemoteTraceback

__all__ = [
    "LATE",
    "SKIPPED",
    "Backlog",
    "Message",
    "decode",
    "describe",
    "encode_failure",
    "encode_result",
    "encode_skipped",
    "payload_size",
]

_HEAD = struct.Struct("!qiB")  # job id, attempt, kind
_OK, _ERROR, _SKIPPED, _LATE = 0, 1, 2, 3
_PROTOCOL = pickle.HIGHEST_PROTOCOL

#: ``Message.outcome`` of a job that did not run: cancelled or taken back before it began
SKIPPED: Final = "skipped"
#: ``Message.outcome`` of a job whose deadline had passed when its turn came
LATE: Final = "late"


# ------------------------------------------------------------------ worker side


def describe(obj: object) -> str:
    """``repr(obj)``, or its type's name if its ``__repr__`` fails."""
    try:
        return repr(obj)
    except BaseException:  # noqa: BLE001 - a broken __repr__ must not lose the outcome
        return f"<{type(obj).__name__} object>"


def encode_result(job_id: int, attempt: int, value: Any) -> bytes:
    """The message of an attempt that returned ``value``; a failure if the value
    cannot be pickled (even if pickling it raises ``SystemExit``). Never raises."""
    try:
        return _HEAD.pack(job_id, attempt, _OK) + pickle.dumps(value, protocol=_PROTOCOL)
    except Exception as err:  # noqa: BLE001
        failure = pickle.PicklingError(
            f"job {job_id} returned {type(value).__name__} that cannot be pickled: {describe(err)}"
        )
        failure.__cause__ = err
        return encode_failure(job_id, attempt, failure)
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a __reduce__: the job's error, as if raised
        return encode_failure(job_id, attempt, exc)


def encode_failure(job_id: int, attempt: int, exc: BaseException) -> bytes:
    """The message of an attempt that raised ``exc``. Whatever the exception does when
    formatted or pickled (a ``__reduce__`` that raises), this returns a message, so
    that the job fails and the worker lives on. Never raises."""
    try:
        tb = "".join(traceback.format_exception(exc))
    except BaseException:  # noqa: BLE001
        tb = f"{type(exc).__name__} (its traceback could not be formatted)"
    try:
        exc_bytes = pickle.dumps(exc, protocol=_PROTOCOL)
        pickle.loads(exc_bytes)  # some exceptions pickle but cannot be rebuilt
    except BaseException as err:  # noqa: BLE001
        exc_bytes = pickle.dumps(
            RuntimeError(f"{describe(exc)} (its exception could not be sent back: {describe(err)})"),
            protocol=_PROTOCOL,
        )
    return _HEAD.pack(job_id, attempt, _ERROR) + pickle.dumps((exc_bytes, tb), protocol=_PROTOCOL)


def encode_skipped(job_id: int, attempt: int, *, late: bool = False) -> bytes:
    """The message of a job that did not run (``late``: its deadline had passed)."""
    return _HEAD.pack(job_id, attempt, _LATE if late else _SKIPPED)


# ------------------------------------------------------------------ pool side


class Message(NamedTuple):
    """A decoded outcome message. ``outcome`` is ``Outcome.OK`` (``value`` is the
    result), ``Outcome.ERROR`` (``value`` is the exception, its ``__cause__`` a
    ``RemoteTraceback`` when the worker sent one), ``SKIPPED`` or ``LATE``. A named
    tuple: one is made per result, on the manager's hot path (a frozen dataclass
    cost five times as much)."""

    job_id: int
    attempt: int
    outcome: Outcome | Literal["skipped", "late"]
    value: Any = None


def _message(job_id: int, attempt: int, outcome: Outcome | Literal["skipped", "late"], value: Any = None) -> Message:
    return _new_tuple(Message, (job_id, attempt, outcome, value))


_new_tuple = tuple.__new__  # skips the named tuple's own __new__: half the cost


def decode(data: bytes) -> Message:
    """The outcome in ``data``. A body that cannot be rebuilt here (a class this
    process cannot import, say) is that job's ``ERROR``, naming why; it never raises."""
    job_id, attempt, kind = _HEAD.unpack_from(data)
    if kind == _SKIPPED:
        return _message(job_id, attempt, SKIPPED)
    if kind == _LATE:
        return _message(job_id, attempt, LATE)
    try:
        body = pickle.loads(memoryview(data)[_HEAD.size :])
    except BaseException as err:  # noqa: BLE001 - even SystemExit from a __reduce__: it fails its job only
        exc = pickle.UnpicklingError(f"job {job_id} returned a result that cannot be unpickled here: {err!r}")
        exc.__cause__ = err
        return _message(job_id, attempt, Outcome.ERROR, exc)
    if kind == _OK:
        return _message(job_id, attempt, Outcome.OK, body)
    exc_bytes, tb = body
    failure: BaseException
    try:
        failure = pickle.loads(exc_bytes)
    except BaseException as err:  # noqa: BLE001
        failure = RuntimeError(f"job {job_id} failed, and its exception could not be rebuilt here: {err!r}")
    failure.__cause__ = RemoteTraceback(tb)
    return _message(job_id, attempt, Outcome.ERROR, failure)


# ------------------------------------------------------------------ backlog policy

T = TypeVar("T")


class Backlog:
    """How many waiting jobs a worker (or a Dask task) takes ahead of time, so that it
    never idles for a round trip to the pool between two jobs.

    A job sent ahead stays *queued* (``Dispatcher.prefetch_locked``) and waits behind
    the worker's current job: hence a backlog holds about ``cover`` seconds of work by
    the recent run times (``observe``), at most ``most_jobs`` jobs and ``most_bytes``
    of payload, and only a share of a deep queue (``waiting // workers``): with fewer
    waiting jobs than workers, each goes to whichever worker frees up first. A worker
    that goes idle while jobs wait in another's backlog takes them back
    (``take_back``), longest backlog first.
    """

    def __init__(self, *, most_jobs: int = 16, most_bytes: int = 32 * 1024, cover: float | None = 0.005) -> None:
        self.most_jobs = check_int("most_jobs", most_jobs, minimum=1)
        self.most_bytes = check_int("most_bytes", most_bytes, minimum=0)
        check_number("cover", cover, minimum=0, inclusive=False, none_ok=True)
        self.cover = cover  # None: as deep as most_jobs, whatever the run times
        self._run_avg = 0.0

    def observe(self, run_time: float) -> None:
        """A job ran for ``run_time`` seconds (a moving average of the recent ones)."""
        self._run_avg += (run_time - self._run_avg) * 0.1

    def run_average(self) -> float:
        """The recent jobs' mean run time, in seconds (0 before the first)."""
        return self._run_avg

    def depth(self) -> int:
        """Jobs a worker should hold now, the running one included."""
        if self.cover is None:
            return self.most_jobs
        return min(self.most_jobs, 1 + int(self.cover / max(self._run_avg, 1e-6)))

    def share(self, held: int, waiting: int, workers: int) -> int:
        """How many more to send to a worker that holds ``held`` jobs, with ``waiting``
        jobs in the queue for ``workers`` workers."""
        return max(0, min(self.depth() - held, waiting // max(1, workers)))

    def wants_more(self, ahead: int) -> bool:
        """Whether a busy worker with ``ahead`` jobs sent ahead should get more now:
        once half of its backlog is gone, so that one message carries several jobs."""
        return 2 * ahead < self.depth()

    def fits(self, size: int, used: int) -> bool:
        """Whether a job of ``size`` payload bytes fits beside ``used`` bytes sent ahead."""
        return used + size <= self.most_bytes

    @staticmethod
    def take_back(backlogs: Sequence[list[T]], idle: int) -> list[T]:
        """For ``idle`` idle workers, the jobs to take back from ``backlogs`` (each the
        jobs sent ahead to one worker, not begun, in order): the last of the longest,
        one per idle worker. Removes them from the lists."""
        picks: list[T] = []
        lists = [b for b in backlogs if b]
        while idle > 0 and lists:
            longest = max(lists, key=len)
            picks.append(longest.pop())
            if not longest:
                lists.remove(longest)
            idle -= 1
        return picks


def payload_size(payload: Any) -> int:
    """Bytes of a payload made of bytes (or tuples of them), for ``Backlog.fits``."""
    if type(payload) is tuple and len(payload) == 2:  # the process backend's (fn, args): on its hot path
        first, second = payload
        if type(first) is bytes and type(second) is bytes:
            return len(first) + len(second)
    if payload is None:
        return 0
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return len(payload)
    return sum(payload_size(part) for part in payload)
