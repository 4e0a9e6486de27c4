"""``pools.Executor``: any backend's pool as a ``concurrent.futures.Executor``.

A drop-in where code speaks the standard interface (``loop.run_in_executor``,
libraries that take an ``executor=``, code written against ``ThreadPoolExecutor``)::

    with pools.Executor("process", workers=4, max_tasks_per_worker=100) as ex:
        print(list(ex.map(pow, [2, 3], [10, 10], chunksize=64)))

The futures are the pool's jobs (``pools.Job``, a ``concurrent.futures.Future``), so
``concurrent.futures.wait`` and ``as_completed`` work on them, and the pool stays
reachable as ``executor.pool`` (priorities, timeouts, ``stats()``, ``resize()``).

Where it differs from the standard executors, on purpose: the queue is unbounded
unless ``queue_size=`` is given (as theirs is); ``max_workers=`` is taken as the
pool's ``workers=``; and on backends whose jobs cross to another process, ``map``'s
``chunksize`` keeps each item's own result or error (the standard process executor
fails a whole chunk with its first error).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ._batch import Batch, BatchOf, batch_values, refused
from ._core import Pool
from ._job import Job
from .exceptions import InvalidArgument, InvalidCallable

__all__ = ["Executor"]

T = TypeVar("T")


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` over a pool of any backend:
    ``Executor(backend="thread", **pool_options)`` takes ``create_pool``'s options
    (``workers`` or ``max_workers``, ``initializer``, ``max_tasks_per_worker``...)."""

    def __init__(self, backend: str = "thread", /, **pool_options: Any) -> None:
        if "max_workers" in pool_options:
            max_workers = pool_options.pop("max_workers")
            if "workers" in pool_options:
                raise InvalidArgument("give workers= or max_workers= (the same option), not both")
            if max_workers is not None:
                if not isinstance(max_workers, int) or isinstance(max_workers, bool):
                    raise InvalidArgument(f"max_workers must be an int greater than 0, got {max_workers!r}")
                if max_workers <= 0:
                    raise InvalidArgument(f"max_workers must be greater than 0, got {max_workers!r}")
                pool_options["workers"] = max_workers
        pool_options.setdefault("queue_size", sys.maxsize)  # unbounded, as the standard executors' queues
        #: the pool behind this executor: its jobs are this executor's futures
        self.pool = Pool(backend, **pool_options)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Job[T]:
        """Schedule ``fn(*args, **kwargs)``; return its future (a ``pools.Job``)."""
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        return self.pool.submit(fn, *args)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """As ``concurrent.futures.Executor.map``: every call is submitted at once,
        results come lazily in order, and ``timeout`` (seconds from this call)
        raises ``TimeoutError`` for a result not ready by then. ``chunksize``: calls
        per job on backends where a job's round trip dominates (process, dask);
        each item keeps its own result or error."""
        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, got {chunksize!r}")
        end = None if timeout is None else timeout + time.monotonic()
        argsets = zip(*iterables, strict=False)
        if chunksize == 1 or not self.pool.capabilities.batches_map:
            futures = [self.submit(fn, *args) for args in argsets]
            return _results(futures, end, chunked=False)
        chunks: list[tuple[int, Job[Batch]]] = []
        batch, first = BatchOf(fn), 0
        while True:
            chunk = tuple(itertools.islice(argsets, chunksize))
            if not chunk:
                break
            try:
                chunks.append((first, self.pool.submit(batch, first, chunk)))
            except InvalidCallable as err:
                for _, job in chunks:
                    _cancel_waiting(job)
                raise refused(self.pool.backend, fn, err) from err
            first += len(chunk)
        return _results(chunks, end, chunked=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; ``cancel_futures`` cancels those not started; with
        ``wait``, return once every running call has ended. Safe to call again."""
        self.pool.shutdown(wait=wait, cancel_pending=cancel_futures)

    @property
    def _broken(self) -> bool:  # what concurrent.futures' own executors call it
        return self.pool.broken

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pool!r}>"


def _cancel_waiting(future: Any) -> None:
    # concurrent.futures' cancel, which leaves a running call alone: a pool's own
    # cancel would stop it (kill its process, abandon its thread).
    future._pool._cancel_waiting(future)


def _result(future: concurrent.futures.Future[Any], end: float | None) -> Any:
    try:
        return future.result() if end is None else future.result(end - time.monotonic())
    finally:
        _cancel_waiting(future)  # timed out: if it has not begun, it must not run unseen
        del future


def _results(futures: list[Any], end: float | None, *, chunked: bool) -> Iterator[Any]:
    # A generator that is closed (or fails) cancels the calls not yet begun, as
    # concurrent.futures does; the list is reversed so that each is dropped once
    # yielded, and no reference to a yielded result is kept here.
    futures.reverse()
    try:
        while futures:
            if not chunked:
                yield _result(futures.pop(), end)  # no local name: the result is not kept here
                continue
            at, future = futures.pop()
            yield from batch_values(at, _result(future, end))
            del future
    finally:
        for future in futures:
            _cancel_waiting(future[1] if chunked else future)
