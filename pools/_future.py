"""``LazyFuture``: a ``concurrent.futures.Future`` that makes its parts on first use.

A plain ``Future`` builds a ``threading.Condition``, a waiter list and a callback list
up front: eight objects for the garbage collector per job, and most jobs never need
them (their result is read after they ended, or they are awaited). Here they are
made on first use. Until the condition exists, the module lock ``_LAZY`` guards the
future's state; once it exists (it never goes away), the condition does, exactly as
in ``Future`` — so every base-class method, ``wait()``, ``as_completed()`` and
``asyncio.wrap_future()`` still work.

This leans on CPython's private Future internals, listed in ``FUTURE_INTERNALS``;
``tests/test_job_future.py`` fails, naming the attribute, if a Python release
changes them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, Self, TypeVar, cast

from ._callbacks import on_internal_thread
from .exceptions import LoopJobCancelled

__all__ = ["FUTURE_INTERNALS", "LazyFuture"]

T = TypeVar("T")

#: a done-callback, as kept: it is called with the future it was added to
DoneCallback = Callable[[Any], object]

#: What of ``concurrent.futures`` this module relies on: the attributes that
#: ``Future``'s own methods use (replaced here by lazy versions), the module's state
#: constants and logger, and the ``RLock`` methods that ``Condition.wait`` uses.
FUTURE_INTERNALS = {
    "Future attributes": ("_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"),
    "Future methods": ("_invoke_callbacks",),
    "concurrent.futures._base": ("PENDING", "RUNNING", "FINISHED", "CANCELLED", "CANCELLED_AND_NOTIFIED", "LOGGER"),
    "RLock methods": ("_release_save", "_acquire_restore"),
}


class LazyFuture(concurrent.futures.Future[T], Generic[T]):
    """A ``Future`` whose condition, waiter list and callback list are made on first
    use, and whose done-callbacks, when a pool's own thread resolves it, run on the
    callback thread (``_defer``). Awaitable without ``asyncio.wrap_future``.

    Generic in its result (``Future[T]``); ``Generic`` is a base too so that
    ``LazyFuture[T]`` can be subclassed at run time (``Future`` alone is not a
    ``typing`` generic)."""

    def __init__(self) -> None:
        # Future.__init__ is replaced by the lazy fields below.
        self._state = _F_PENDING
        self._result = None
        self._exception: BaseException | None = None
        self._cond: threading.Condition | None = None
        self._callbacks: list[DoneCallback] | None = None
        self._waiter_list: list[Any] | None = None
        self._aw_loop: asyncio.AbstractEventLoop | None = None  # the first awaiter's loop
        self._aw_future: asyncio.Future[None] | None = None  # ... and the future it sleeps on

    def _defer(self, call: Callable[[], Any]) -> None:
        """Run ``call`` (done-callbacks) off the pool's own threads (see _callbacks)."""
        raise NotImplementedError

    # -- asyncio's future protocol, for a future bound to the loop it ends on.
    # asyncio.isfuture() asks for _asyncio_future_blocking not None: None on the
    # class, False once bound. gather(), wait(), wait_for(), shield() and
    # run_until_complete() then take the future as it is, where they would wrap any
    # other awaitable in a Task of its own (a Task, a coroutine and three loop
    # callbacks per job: more than the pool's own cost of a job).

    _asyncio_future_blocking: bool | None = None
    _loop: asyncio.AbstractEventLoop | None = None  # read by asyncio.futures._get_loop too
    _cancel_message: Any = None  # read by asyncio.gather for a cancelled child

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make this an asyncio future of ``loop``, the loop that ends it: its
        done-callbacks then run on that loop, as an asyncio future's do."""
        self._loop = loop
        self._asyncio_future_blocking = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"{self!r} is not bound to an event loop (await it, or asyncio.wrap_future it)")
        return loop

    def remove_done_callback(self, fn: Callable[..., object]) -> int:
        """Remove every registration of ``fn``; return how many (asyncio's API)."""
        with _LAZY:
            cond = self._cond
            if cond is None:
                return self._drop_callback(fn)
        with cond:
            return self._drop_callback(fn)

    def _drop_callback(self, fn: Callable[..., object]) -> int:
        if self._state in _F_DONE:
            # Ended (written under the lock held here): its callbacks run or ran, and
            # the list is let go (_invoke_callbacks); none is left to remove, as in asyncio.
            return 0
        callbacks = self._callbacks
        if not callbacks:
            return 0
        kept = [cb for cb in callbacks if not (cb == fn or (type(cb) is _InContext and cb.fn == fn))]
        removed = len(callbacks) - len(kept)
        if removed:
            self._callbacks = kept  # a new list, never changed in place: see _schedule_on
        return removed

    def _make_cancelled_error(self) -> asyncio.CancelledError:
        # Exactly asyncio's class: asyncio.timeout() tells its own cancellation by
        # ``exc_type is CancelledError``, and gather() passes this one on.
        return asyncio.CancelledError()

    # -- the lazy parts of Future (names used by concurrent.futures itself)

    # Typed as the stubs type Future's attributes, which as_completed()'s stubs also
    # ask of the futures it takes: so that a checker takes a Job there. What they hold
    # acts as a Condition and a list do in concurrent.futures (see the classes below).

    @property
    def _condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _LAZY:
                cond = self._cond
                if cond is None:
                    if self._state in _F_DONE:
                        # Ended, and nobody ever waited: its state can no longer change,
                        # so there is nothing to guard, wait for or notify. wait(jobs)
                        # and as_completed(jobs) lock every job's condition and would
                        # otherwise build one per job that already ended.
                        return _ENDED_CONDITION
                    cond = self._cond = _new_condition()
        return cond

    @_condition.setter
    def _condition(self, cond: threading.Condition) -> None:  # as Future.__init__ would (never called)
        self._cond = cond

    @property
    def _waiters(self) -> list[Any]:  # touched only under the condition
        if self._waiter_list is None:
            if self._cond is None and self._state in _F_DONE:
                return _NO_WAITERS  # ended: no waiter will ever be told anything
            self._waiter_list = []
        return self._waiter_list

    @_waiters.setter
    def _waiters(self, waiters: list[Any]) -> None:  # as Future.__init__ would (never called)
        self._waiter_list = waiters

    def _invoke_callbacks(self) -> None:
        woken, loop = self._aw_future, self._aw_loop
        if woken is not None and loop is not None:  # both set by the first awaiter, at once
            self._aw_future = None
            _wake_awaiter(loop, woken, self)
            self._aw_loop = None
        # Ended: they are called once, here, and never again (one added from now on is
        # called at once), so the future lets go of them and of what they hold, as an
        # asyncio future does. A caller that keeps its futures (a list of results to
        # come) would otherwise keep a callback and its list alive per job, for the
        # garbage collector to walk at every full collection.
        callbacks, self._callbacks = self._callbacks, None
        if not callbacks:
            return
        if self._loop is not None and _schedule_on(self._loop, self, callbacks):
            return
        if on_internal_thread():
            # Settled by the timer or a manager thread, which deliver every job's
            # deadline and result: user code runs on the callback thread instead (see
            # _callbacks); other awaiters are woken here, as the first one was.
            _call_each(self, [cb for cb in callbacks if _is_waker(cb)])
            later = [cb for cb in callbacks if not _is_waker(cb)]
            if later:
                self._deferred = True  # until they ran: a callback added meanwhile runs after them
                self._defer(functools.partial(_call_deferred, self, later))
        else:
            _call_each(self, callbacks)

    @property
    def _done_callbacks(self) -> list[DoneCallback] | tuple[()]:
        return self._callbacks or ()

    def add_done_callback(self, fn: Callable[[Self], object], *, context: contextvars.Context | None = None) -> None:
        # Typed with Self, not Future[T] as in Future: a callback gets this very
        # object, so one written for a Job (job.status, job.job_id) type-checks.
        # ``context``: asyncio's, the context the callback runs in.
        if context is not None:
            fn = _InContext(fn, context)
        with _LAZY:
            cond = self._cond
            if cond is None and self._keep_callback(fn):
                return
        if cond is not None:
            with cond:
                if self._keep_callback(fn):
                    return
        if self._loop is not None and _schedule_on(self._loop, self, [fn]):
            return
        if getattr(self, "_deferred", False):
            self._defer(functools.partial(_call_deferred, self, [fn]))  # in order, after those
            return
        try:
            fn(self)
        except Exception:  # noqa: BLE001 - logged and lost, as concurrent.futures does
            concurrent.futures._base.LOGGER.exception("exception calling callback for %r", self)

    def _keep_callback(self, fn: DoneCallback) -> bool:
        """Keep ``fn`` for the end, unless the future ended already (lock held)."""
        if self._state in _F_DONE:
            return False
        if self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)
        return True

    def set_result(self, result: T) -> None:
        if not self._end_lazily(result, None):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        if not self._end_lazily(None, exception):
            super().set_exception(exception)

    def _end_lazily(self, result: T | None, exception: BaseException | None) -> bool:
        """End the future here if it has no condition yet, and return True; False:
        someone may be waiting on its condition, so Future's own method must end it."""
        with _LAZY:
            if self._cond is not None:
                return False
            if self._state in _F_DONE:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = _F_FINISHED
        # Nobody could be waiting on a condition that does not exist.
        self._invoke_callbacks()
        return True

    # -- reads of an ended future need no lock: its fields never change again.
    # GIL: the state is written last, under a lock, after the result; a reader that
    # sees it finished sees the result too. A free-threaded build needs that order
    # made explicit (an atomic store/load of _state), compiled or not.

    def done(self) -> bool:
        return self._state in _F_DONE

    def cancelled(self) -> bool:
        return self._state in _F_CANCELLED

    def result(self, timeout: float | None = None) -> T:
        if self._state is _F_FINISHED and self._exception is None:
            # Finished without an exception: _result holds the T that set_result got
            # (the stubs type the field T | None, for the time before it is set).
            return self._result  # type: ignore[return-value]
        if self._loop is not None and self._state in _F_CANCELLED:
            raise LoopJobCancelled  # what asyncio's callers of result() expect, too
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state is _F_FINISHED:
            return self._exception
        if self._loop is not None and self._state in _F_CANCELLED:
            raise LoopJobCancelled
        return super().exception(timeout)

    def __await__(self) -> Generator[Any, None, T]:
        # Not asyncio.wrap_future: that costs a thread-safe call (a self-pipe write)
        # per job even when the job ends on the awaiting loop's own thread, which is
        # where the asyncio backend ends its jobs. Cancelling the awaiting task
        # cancels the job, as with wrap_future.
        if self._state not in _F_DONE:
            loop = asyncio.get_running_loop()
            woken = loop.create_future()
            with _LAZY:
                # The first awaiter rides in two fields, not in a callback: the
                # common case, with no partial and no callback list per job.
                first = self._cond is None and self._aw_future is None and self._state not in _F_DONE
                if first:
                    self._aw_loop, self._aw_future = loop, woken
            if not first:
                self.add_done_callback(functools.partial(_wake_awaiter, loop, woken))
            try:
                yield from woken
            except asyncio.CancelledError:
                self.cancel()
                raise
        if self._state is _F_FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result  # type: ignore[return-value]  # as in result()
        raise asyncio.CancelledError


_LAZY = threading.Lock()  # guards a Job's future state until its condition exists


class _JobCondition:
    """What concurrent.futures uses of a job's ``threading.Condition``, for a tenth
    of its construction cost: ``wait(jobs)`` makes one for every job still
    pending, and ``Condition()`` builds a dozen objects (bound methods, a deque).
    The waiting protocol is Condition's own: a lock per sleeper, released by
    ``notify_all`` under the mutex."""

    __slots__ = ("_mutex", "_sleepers")

    def __init__(self) -> None:
        self._mutex = threading.RLock()
        self._sleepers: list[Any] | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._mutex.acquire(blocking, timeout)

    def release(self) -> None:
        self._mutex.release()

    def __enter__(self) -> bool:
        return self._mutex.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self._mutex.release()

    def wait(self, timeout: float | None = None) -> bool:
        sleeper = _allocate_lock()
        sleeper.acquire()
        if self._sleepers is None:
            self._sleepers = []
        self._sleepers.append(sleeper)
        saved = self._mutex._release_save()  # type: ignore[attr-defined]
        woken = False
        try:
            if timeout is None:
                woken = sleeper.acquire()
            elif timeout > 0:
                woken = sleeper.acquire(True, timeout)
            else:
                woken = sleeper.acquire(False)
            return woken
        finally:
            self._mutex._acquire_restore(saved)  # type: ignore[attr-defined]
            if not woken and self._sleepers is not None:
                try:
                    self._sleepers.remove(sleeper)
                except ValueError:
                    pass

    def notify(self, n: int = 1) -> None:
        sleepers = self._sleepers
        while sleepers and n > 0:
            sleepers.pop(0).release()
            n -= 1

    def notify_all(self) -> None:
        sleepers, self._sleepers = self._sleepers, None
        for sleeper in sleepers or ():
            sleeper.release()


_allocate_lock = threading.Lock  # the C lock type: a sleeper is one such lock


class _EndedCondition:
    """The condition of a job that ended before anyone needed one: a no-op, since
    an ended future's fields never change again (no lock, so no lock order)."""

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        pass

    __enter__ = acquire

    def __exit__(self, *exc_info: Any) -> None:
        pass

    def wait(self, timeout: float | None = None) -> bool:
        return True  # callers re-check the (final) state

    def notify(self, n: int = 1) -> None:
        pass

    def notify_all(self) -> None:
        pass


# What concurrent.futures and its stubs expect in Future._condition: these two classes
# do all that it asks of a threading.Condition, and no more.
_ENDED_CONDITION = cast(threading.Condition, _EndedCondition())
_new_condition = cast("Callable[[], threading.Condition]", _JobCondition)


class _NoWaiters(tuple[Any, ...]):
    """The waiter list of an ended job: wait(jobs) adds its waiter to every job and
    removes it afterwards; an ended job has nothing to tell it."""

    __slots__ = ()

    def append(self, waiter: Any) -> None:
        pass

    def remove(self, waiter: Any) -> None:
        pass


_NO_WAITERS = cast("list[Any]", _NoWaiters())  # what Future._waiters is used as
_F_PENDING = concurrent.futures._base.PENDING
_F_FINISHED = concurrent.futures._base.FINISHED
_F_CANCELLED = frozenset({concurrent.futures._base.CANCELLED, concurrent.futures._base.CANCELLED_AND_NOTIFIED})
_F_DONE = _F_CANCELLED | {_F_FINISHED}


def _call_each(job: concurrent.futures.Future[Any], callbacks: list[DoneCallback]) -> None:
    for callback in callbacks:
        try:
            callback(job)
        except Exception:  # noqa: BLE001 - logged and lost, as concurrent.futures does
            concurrent.futures._base.LOGGER.exception("exception calling callback for %r", job)


class _InContext:
    """A done-callback added with asyncio's ``context=``: run in that context."""

    __slots__ = ("context", "fn")

    def __init__(self, fn: DoneCallback, context: contextvars.Context) -> None:
        self.fn = fn
        self.context = context

    def __call__(self, future: Any) -> object:
        return self.context.run(self.fn, future)


def _schedule_on(loop: asyncio.AbstractEventLoop, future: Any, callbacks: list[DoneCallback]) -> bool:
    """Schedule an asyncio future's done-callbacks on its loop, never calling them at
    once, as asyncio does (gather() and Task.cancel() count on it: gather's callback
    run inside a child's cancel() would end it before it knows it was cancelled).
    False if the loop no longer runs: nothing would ever call them there. The list is
    not copied: an ended future has let go of it (a callback added later is scheduled
    on its own), and remove_done_callback replaces a list rather than change it."""
    if asyncio._get_running_loop() is loop:
        loop.call_soon(_call_each, future, callbacks)
        return True
    if not loop.is_running():  # stopped or closed: the caller runs them as any job's
        return False
    try:
        loop.call_soon_threadsafe(_call_each, future, callbacks)
    except RuntimeError:  # closed meanwhile
        return False
    return True


def _call_deferred(future: Any, callbacks: list[DoneCallback]) -> None:
    try:
        _call_each(future, callbacks)
    finally:
        future._deferred = False


def _is_waker(callback: DoneCallback) -> bool:
    """A callback that only wakes an awaiter (pool code, quick): ``await job``'s, and
    the one ``asyncio.wrap_future`` chains, which only schedules on the awaiting loop."""
    if type(callback) is functools.partial:
        return callback.func is _wake_awaiter
    return getattr(callback, "__qualname__", None) == _WRAP_FUTURE_CALLBACK


#: asyncio.wrap_future's callback on the wrapped concurrent future (asyncio internals,
#: checked by tests/test_job_future.py)
_WRAP_FUTURE_CALLBACK = "_chain_future.<locals>._call_set_state"


def _wake_awaiter(loop: asyncio.AbstractEventLoop, woken: asyncio.Future[None], _job: object) -> None:
    if asyncio._get_running_loop() is loop:  # ended on the awaiting loop's thread: wake it directly
        if not woken.done():
            woken.set_result(None)
        return
    try:
        loop.call_soon_threadsafe(resolve_quietly, woken)
    except RuntimeError:  # that loop is closed: nobody is awaiting any more
        pass


def resolve_quietly(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
