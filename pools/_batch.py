"""``map`` in batches, for backends whose jobs cross to another process (the process
and Dask backends, ``Capabilities.batches_map``): a job's round trip to its worker
costs tens of microseconds or more, far more than a small call, so ``map`` sends
several items as one job.

Three parts, one contract:

- ``run_batch`` runs in the worker: ``fn(*args)`` for each item, every item's value
  or error kept apart, and the time the items took. A batch of one item is its item's
  job: an error it raises fails the job (the pool counts it failed);
- ``batch_values`` reads a batch's outcome in the pool, item by item, raising an
  item's error when its turn comes (its ``__cause__`` the worker's traceback), and an
  item whose value cannot be sent or rebuilt fails alone, naming why;
- ``BatchSizer`` picks each batch's size from the measured time and bytes of an item:
  first single items (so that slow items are never bundled blind), then batches
  growing at most fourfold over the largest measured, toward about ``target`` seconds
  of work and at most ``most_bytes`` of arguments or values, shrinking toward the end
  of an input of known length so that the workers finish together (OpenMP's "guided"
  schedule).

What a job does, a batch does as a whole: a worker that crashes fails its whole batch,
``max_tasks_per_worker`` counts batches, and ``current_context()`` is the batch's.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import remote
from ._context import JobContext, current_context
from .exceptions import InvalidCallable, NoCurrentJob

__all__ = ["Batch", "BatchOf", "BatchSizer", "batch_values", "refused", "run_batch"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class BatchOf:
    """``fn`` over one batch of a map's items: ``BatchOf(fn)(first, items)``. One
    object a map, so that a backend that pickles a job's function once for the jobs
    that share it (the process backend) pickles ``fn`` once a map, not once a batch:
    ``fn`` may be large (a ``functools.partial`` holding a model, say)."""

    __slots__ = ("__weakref__", "fn")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, first: int, items: tuple[tuple[Any, ...], ...]) -> Batch:
        return run_batch(self.fn, first, items)

    def __repr__(self) -> str:
        return f"<batches of {self.fn!r}>"


#: a batch's outcome: the seconds its items took, one entry an item (its pickled value,
#: or None where it failed), and the failures' outcome messages, in item order
Batch = tuple[float, list[bytes | None], list[bytes]]


def run_batch(fn: Callable[..., Any], first: int, items: tuple[tuple[Any, ...], ...]) -> Batch:
    """Run ``fn(*args)`` for each ``args`` of ``items``, items ``first``, ``first + 1``...
    of the map (in a worker). A batch of one item is that item's job: what it raises,
    or a value that cannot be pickled, fails the job."""
    start = time.perf_counter()
    if len(items) == 1:
        value = fn(*items[0])
        elapsed = time.perf_counter() - start
        try:
            return elapsed, [pickle.dumps(value, protocol=_PROTOCOL)], []
        except Exception as err:
            raise _unpicklable(first, value, err) from err
    values: list[Any] = []
    failed: dict[int, BaseException] = {}
    try:
        ctx: JobContext | None = current_context()
    except NoCurrentJob:  # a backend that sets no context
        ctx = None
    for i, args in enumerate(items):
        if ctx is not None and not i & 63 and ctx.cancelled():  # cancelled while it runs (on Dask): stop
            ctx.check()
        try:
            values.append(fn(*args))
        except MemoryError:
            raise  # the worker's own failure: the process backend replaces the worker
        except BaseException as exc:  # noqa: BLE001 - the item's error, raised in the pool at its turn
            values.append(None)
            failed[i] = exc
    elapsed = time.perf_counter() - start
    out: list[bytes | None] = []
    failures: list[bytes] = []
    for i, value in enumerate(values):
        if i in failed:
            out.append(None)
            failures.append(remote.encode_failure(0, first + i, failed.pop(i)))
            continue
        try:
            out.append(pickle.dumps(value, protocol=_PROTOCOL))
        except BaseException as err:  # noqa: BLE001 - even SystemExit from a __reduce__: this item fails alone
            out.append(None)
            failures.append(remote.encode_failure(0, first + i, _unpicklable(first + i, value, err)))
    del values
    return elapsed, out, failures


def _unpicklable(index: int, value: Any, err: BaseException) -> pickle.PicklingError:
    error = pickle.PicklingError(
        f"item {index} of map returned {type(value).__name__} that cannot be pickled: {remote.describe(err)}"
    )
    error.__cause__ = err
    return error


def batch_values(first: int, outcome: Batch) -> Iterator[Any]:
    """The values of a batch's items, in order (in the pool); an item that failed
    raises its error when its turn comes."""
    _, out, failures = outcome
    out.reverse()  # popped from the end: nothing yielded stays referenced here
    failures.reverse()
    for i in range(len(out)):
        yield _value(first + i, out.pop(), failures)


def _value(index: int, data: bytes | None, failures: list[bytes]) -> Any:
    if data is None:
        raise remote.decode(failures.pop()).value  # its __cause__ the worker's traceback
    try:
        return pickle.loads(data)
    except (KeyboardInterrupt, MemoryError):
        raise  # this process's own, not the value's
    except BaseException as err:
        exc = pickle.UnpicklingError(
            f"item {index} of map returned a value that cannot be unpickled here: {remote.describe(err)}"
        )
        raise exc from err


def refused(backend: str, fn: Callable[..., Any], err: InvalidCallable) -> InvalidCallable:
    """The error for a batch whose items cannot be sent to the workers."""
    return InvalidCallable(
        f"map sends its items to the {backend!r} workers in batches, and the arguments of an item for "
        f"{remote.describe(fn)} cannot be sent: {remote.describe(err.__cause__)}"
    )


class BatchSizer:
    """How many items go in the next batch of a ``map`` over ``workers`` workers,
    ``total`` items in all (None: not known, an iterator say).

    Until a batch has come back, batches hold one item each: a batch of slow items
    sent blind would leave the other workers idle. Then a batch holds about
    ``target`` seconds of work by the measured time of an item (a moving average
    over the batches, so that it follows items whose cost drifts), at most ``most``
    items and ``most_bytes`` of arguments or values, and at most four times the
    largest batch measured so far (one fast first item cannot size a batch of slow
    ones); with a known total, at most the remaining items over twice the workers (but
    no less than ``least`` seconds' worth), so that the last batches are small and no
    worker is left running a long one alone.
    At most ``ahead`` batches a worker are in flight."""

    __slots__ = (
        "_bytes",
        "_largest",
        "_per_item",
        "ahead",
        "least",
        "most",
        "most_bytes",
        "remaining",
        "target",
        "workers",
    )

    def __init__(
        self,
        workers: int,
        total: int | None,
        *,
        target: float = 0.01,
        least: float = 0.001,
        most: int = 10_000,
        most_bytes: int = 1 << 20,
        ahead: int = 4,
    ) -> None:
        self.workers = max(1, workers)
        self.remaining = total
        self.target, self.least, self.most, self.most_bytes, self.ahead = target, least, most, most_bytes, ahead
        self._per_item = 0.0  # seconds an item, by a moving average over the batches measured
        self._bytes = 0.0  # bytes an item, likewise
        self._largest = 0  # the most items of a batch measured: 0 until one is

    def in_flight(self) -> int:
        """The most batches to keep in flight."""
        return self.ahead * self.workers

    def observe(self, seconds: float, items: int, nbytes: int = 0) -> None:
        """A batch of ``items`` items took ``seconds`` in its worker and carried
        ``nbytes`` (the larger of its arguments and its values)."""
        items = max(1, items)
        if not self._largest:
            self._per_item, self._bytes = seconds / items, nbytes / items
        else:  # each batch weighs half: recent batches decide
            self._per_item = (self._per_item + seconds / items) / 2
            self._bytes = (self._bytes + nbytes / items) / 2
        self._largest = max(self._largest, items)

    def next_size(self) -> int:
        """The size of the next batch (call ``sent`` once it is made)."""
        if not self._largest:
            return 1
        per_item = max(self._per_item, 1e-9)
        size = min(self.most, 4 * self._largest, max(1, int(self.target / per_item)))
        if self._bytes:
            size = min(size, max(1, int(self.most_bytes / self._bytes)))
        if self.remaining is not None:
            guided = math.ceil(self.remaining / (2 * self.workers))
            size = min(size, max(guided, int(self.least / per_item), 1))
        return max(1, size)

    def sent(self, items: int) -> None:
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - items)
