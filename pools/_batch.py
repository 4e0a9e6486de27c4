"""``map`` in batches, for backends whose jobs cross to another process (the process
and Dask backends, ``Capabilities.batches_map``): a job's round trip to its worker
costs tens of microseconds or more, far more than a small call, so ``map`` sends
several items as one job.

Three parts, one contract:

- ``run_batch`` runs in the worker: ``fn(*args)`` for each item, every item's result
  or error kept apart, and the time the items took (a batch of one item fails as its
  item's job would: the pool counts it failed);
- ``batch_values`` reads a batch's outcome in the pool, item by item, raising an
  item's error when its turn comes (its ``__cause__`` the worker's traceback);
- ``BatchSizer`` picks each batch's size from the measured time of an item: first
  single items (so that slow items are never bundled blind), then batches of about
  ``target`` seconds of work, shrinking toward the end of an input of known length
  so that the workers finish together (OpenMP's "guided" schedule).

A batch's values are pickled together, once; only when that fails (one value cannot
be pickled) is each item encoded alone, so that the item that cannot cross fails
alone, naming why.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import remote
from ._types import Outcome

__all__ = ["BatchSizer", "batch_values", "run_batch"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL


def run_batch(fn: Callable[..., Any], items: tuple[tuple[Any, ...], ...]) -> tuple[float, bool, bytes]:
    """Run ``fn(*args)`` for each ``args`` of ``items`` (in a worker). Returns the
    seconds the items took, and their outcomes: ``(False, pickle of (values,
    {index: failure message}))``, or, when the values cannot be pickled together,
    ``(True, pickle of [one outcome message per item])``."""
    start = time.perf_counter()
    values: list[Any] = []
    failures: dict[int, bytes] = {}
    if len(items) == 1:  # one item: its error is its job's, as a job of its own would fail
        values.append(fn(*items[0]))
    else:
        for i, args in enumerate(items):
            try:
                values.append(fn(*args))
            except Exception as exc:  # noqa: BLE001 - the item's error, raised in the pool when its turn comes
                values.append(None)
                failures[i] = remote.encode_failure(0, i, exc)
    elapsed = time.perf_counter() - start
    try:
        return elapsed, False, pickle.dumps((values, failures), protocol=_PROTOCOL)
    except BaseException:  # noqa: BLE001 - a value that cannot cross: each item alone says which
        messages = [
            failures[i] if i in failures else remote.encode_result(0, i, value) for i, value in enumerate(values)
        ]
        return elapsed, True, pickle.dumps(messages, protocol=_PROTOCOL)


def batch_values(outcome: tuple[float, bool, bytes]) -> Iterator[Any]:
    """The values of a batch's items, in order (in the pool); an item that failed
    raises its error when its turn comes."""
    _, per_item, data = outcome
    if per_item:
        messages: list[bytes] = pickle.loads(data)
        messages.reverse()  # popped from the end: nothing yielded stays referenced here
        while messages:
            message = remote.decode(messages.pop())
            if message.outcome is not Outcome.OK:
                raise message.value  # its __cause__ the worker's traceback
            yield message.value
        return
    values, failures = pickle.loads(data)
    values.reverse()
    for i in range(len(values)):
        if i in failures:
            raise remote.decode(failures[i]).value
        yield values.pop()


class BatchSizer:
    """How many items go in the next batch of a ``map`` over ``workers`` workers,
    ``total`` items in all (None: not known, an iterator say).

    Until a batch has come back, batches hold one item each: a batch of slow items
    sent blind would leave the other workers idle. Then a batch holds about
    ``target`` seconds of work by the measured time of an item, at least ``least``
    seconds' worth and at most ``most`` items; with a known total, at most the
    remaining items over twice the workers, so that the last batches are small and
    no worker is left running a long one alone. At most ``ahead`` batches a worker
    are in flight."""

    __slots__ = ("_items", "_seconds", "ahead", "least", "most", "remaining", "target", "workers")

    def __init__(
        self,
        workers: int,
        total: int | None,
        *,
        target: float = 0.01,
        least: float = 0.001,
        most: int = 10_000,
        ahead: int = 4,
    ) -> None:
        self.workers = max(1, workers)
        self.remaining = total
        self.target, self.least, self.most, self.ahead = target, least, most, ahead
        self._items = 0  # items measured so far, and the seconds they took
        self._seconds = 0.0

    def in_flight(self) -> int:
        """The most batches to keep in flight."""
        return self.ahead * self.workers

    def observe(self, seconds: float, items: int) -> None:
        """A batch of ``items`` items took ``seconds`` in its worker."""
        self._items += items
        self._seconds += seconds

    def next_size(self) -> int:
        """The size of the next batch (call ``sent`` once it is made)."""
        if not self._items:
            return 1
        per_item = max(self._seconds / self._items, 1e-9)
        size = min(self.most, max(1, int(self.target / per_item)))
        if self.remaining is not None:
            guided = math.ceil(self.remaining / (2 * self.workers))
            size = min(size, max(guided, int(self.least / per_item), 1))
        return size

    def sent(self, items: int) -> None:
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - items)
