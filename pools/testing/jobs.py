"""Job functions and cross-process signals for testing pools, on any backend.

Every job exists as a plain function and as a coroutine function (``a``-prefixed),
defined at module top level so that the process backend can pickle it;
:func:`job_for` picks the form a backend runs.

:class:`Gate` holds jobs until the test opens it; :class:`Latch` tells the test
that jobs have started. Both work for a job in a thread, an asyncio task or
another process (a pickled copy talks through the file system), and neither
polls: a waiting job blocks on ``flock`` or an event, the test on a socket.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import fcntl
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from .._context import current_context
from .._future import resolve_quietly

__all__ = ["STOP_GRACE", "Gate", "JobFailure", "Latch", "Transient", "job_for"]


class JobFailure(ValueError):
    """What the failing test jobs raise."""


class Transient(RuntimeError):
    """What ``fail_until`` raises before its lucky attempt."""


# ------------------------------------------------------------------- signals


class Gate:
    """Closed when made; ``open()`` releases every waiter, now and later.

    The maker holds an exclusive ``flock`` on a temporary file; a waiter in
    another process takes a shared lock on it, which blocks until ``open()``.
    In the maker's process, waiters use an Event (threads) or a future (asyncio).
    """

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="poolbench-gate-")
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd: int | None = fd
        self._event: threading.Event | None = threading.Event()
        self._lock = threading.Lock()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._fd = None
        self._event = None  # a copy in another process: wait through the file

    def open(self) -> None:
        assert self._event is not None, "only the Gate's maker can open it"
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            waiters, self._async_waiters = self._async_waiters, []
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(resolve_quietly, fut)
            except RuntimeError:
                pass

    def is_open(self) -> bool:
        return self._event.is_set() if self._event is not None else False

    def wait(self) -> None:
        if self._event is not None:
            self._event.wait()
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return  # closed and removed: it was opened long ago
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)

    async def wait_async(self) -> None:
        if self._event is None:
            await asyncio.to_thread(self.wait)
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._event.is_set():
                return
            fut = loop.create_future()
            self._async_waiters.append((loop, fut))
        await fut

    def close(self) -> None:
        """Open the gate if it is not, and remove its file."""
        if self._event is not None:
            self.open()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Latch:
    """Counts ``arrive()`` calls from jobs anywhere; ``wait(n)`` blocks the test
    until n arrivals in all. Arrivals are datagrams on a Unix socket."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="poolbench-latch-")
        self.path = os.path.join(self._dir, "s")
        self._sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self.count = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._sock = None

    def arrive(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"!", self.path)

    def wait(self, n: int, timeout: float = 30.0) -> bool:
        """True once ``n`` jobs have arrived in all; False after ``timeout`` seconds."""
        assert self._sock is not None, "only the Latch's maker can wait on it"
        deadline = time.monotonic() + timeout
        while self.count < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._sock.settimeout(remaining)
            try:
                self._sock.recv(16)
            except TimeoutError:
                return False
            self.count += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Latch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- jobs


def echo(value: Any = None, *ballast: Any) -> Any:
    """Return ``value`` (``ballast``: arguments that only make the job bigger)."""
    return value


async def aecho(value: Any = None, *ballast: Any) -> Any:
    return value


def add(a: Any, b: Any) -> Any:
    return a + b


async def aadd(a: Any, b: Any) -> Any:
    return a + b


def fail(message: str = "job failed") -> None:
    raise JobFailure(message)


async def afail(message: str = "job failed") -> None:
    raise JobFailure(message)


def fail_or_hold(message: str, gate: Gate | None = None) -> str:
    """Without ``gate``, raise JobFailure(message) at once; with one, wait for it to
    open, then return ``message``."""
    if gate is None:
        raise JobFailure(message)
    gate.wait()
    return message


async def afail_or_hold(message: str, gate: Gate | None = None) -> str:
    if gate is None:
        raise JobFailure(message)
    await gate.wait_async()
    return message


def fail_until(n: int, value: Any = None) -> tuple[Any, int]:
    """Fail with Transient before attempt ``n``; then return (value, attempt)."""
    attempt = current_context().attempt
    if attempt < n:
        raise Transient(f"attempt {attempt} of {n}")
    return (value, attempt)


async def afail_until(n: int, value: Any = None) -> tuple[Any, int]:
    return fail_until(n, value)


#: what :func:`hold` returns where it ran inside ``submit()``, in the submitting thread
RAN_INSIDE_SUBMIT = "ran inside submit()"


def hold(gate: Gate, latch: Latch | None = None, value: Any = None, *, caller: tuple[int, int] | None = None) -> Any:
    """Arrive at ``latch``, wait for ``gate`` to open, return ``value``.

    ``caller``: the ``(pid, thread id)`` that submitted it. Where it runs there — an
    executor that runs each job inside ``submit()``, as a synchronous one for debugging
    does — it returns :data:`RAN_INSIDE_SUBMIT` at once, neither arriving nor waiting:
    nothing else could run to open the gate."""
    if caller is not None and caller == (os.getpid(), threading.get_ident()):
        return RAN_INSIDE_SUBMIT
    if latch is not None:
        latch.arrive()
    gate.wait()
    return value


def ran_inside_submit(f: concurrent.futures.Future[Any]) -> bool:
    """True where ``f`` is a :func:`hold` job that returned :data:`RAN_INSIDE_SUBMIT`."""
    # == rather than is: an executor may hand back a copy of what the job returned
    return f.done() and not f.cancelled() and f.exception() is None and f.result() == RAN_INSIDE_SUBMIT


def wait_held(
    latch: Latch, held: list[concurrent.futures.Future[Any]], limit: float
) -> list[concurrent.futures.Future[Any]]:
    """Wait up to ``limit`` seconds for every :func:`hold` job in ``held`` to arrive at
    ``latch``, and return those that did: one found to have run inside ``submit()``
    after all (its future settled later) is left out. Before the gate opens a held job
    cannot end otherwise than by failing: that is raised at once, its cause chained,
    rather than waited for."""
    held = list(held)
    deadline = time.monotonic() + limit
    while not latch.wait(len(held), min(0.5, max(0.0, deadline - time.monotonic()))):
        for f in [f for f in held if f.done()]:
            if ran_inside_submit(f):
                held.remove(f)
                continue
            cause = None if f.cancelled() else f.exception()
            if cause is not None:
                raise RuntimeError(f"a job holding a worker failed before it was let go: {cause!r}") from cause
            raise RuntimeError(
                "a job holding a worker was cancelled before it was let go"
                if f.cancelled()
                else f"a job holding a worker returned {f.result()!r:.80} before it was let go"
            )
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"only {latch.count} of {len(held)} workers ran a job at the same time within {limit:.0f} s: too "
                "slow to start, or fewer workers than it was given (a factory takes the number of workers and "
                "must use it)"
            )
    return held


async def ahold(gate: Gate, latch: Latch | None = None, value: Any = None) -> Any:
    if latch is not None:
        latch.arrive()
    await gate.wait_async()
    return value


#: Seconds a probe (:func:`until_stopped`) gives the pool to stop it once it should be
#: stopped, before it reports that it kept running. Generous: only a pool that does
#: not stop its jobs ever waits this long.
STOP_GRACE = 10.0


def until_stopped(
    latch: Latch | None = None, marker: str | None = None, grace: float = STOP_GRACE, forced: bool = False
) -> bool:
    """Run until stopped. Without ``marker``: return once the job's context is
    cancelled or past its deadline.

    With ``marker``, a probe that can see a job kept running. It should be stopped at
    its deadline or, without one, soon after it started (a test cancels it at once);
    from then it gives the pool ``grace`` seconds. What "stopped" means is the
    backend's: a cooperative one (thread, Dask) cancels the job's context, and the
    probe returns as soon as its context says so; with ``forced`` (a backend whose
    ``capabilities.stops_running_jobs`` says it kills the process or cancels the task) the probe
    ignores its context and must be ended from outside. A probe still running at the
    end of the grace writes ``marker`` and returns False: the pool let it run on."""
    ctx = current_context()
    start = time.monotonic()
    if latch is not None:
        latch.arrive()
    if marker is None:
        return ctx.wait()
    limit = (start if ctx.deadline is None else ctx.deadline) + grace
    if forced:
        time.sleep(max(0.0, limit - time.monotonic()))  # a kill ends this sleep, and the probe with it
        stopped = False
    else:
        stopped = ctx.wait(max(0.0, limit - time.monotonic()))
    if not stopped:
        _ran_on(marker)
    return stopped


async def auntil_stopped(
    latch: Latch | None = None, marker: str | None = None, grace: float = STOP_GRACE, forced: bool = True
) -> bool:
    """The coroutine form: a coroutine job is stopped by cancelling its task, which
    ends this sleep (every coroutine backend can; ``forced`` is accepted for the same
    call as the plain form). With ``marker``, the sleep lasts ``grace`` seconds past
    the deadline (or past the start, without one); a probe that wakes up was not
    stopped, writes ``marker`` and returns False."""
    ctx = current_context()
    if latch is not None:
        latch.arrive()
    if marker is None:
        await asyncio.sleep(3600)
        return False
    await asyncio.sleep((ctx.remaining() or 0.0) + grace)
    _ran_on(marker)
    return False


def _ran_on(marker: str) -> None:
    with open(marker, "w") as f:
        f.write(f"job {current_context().job_id} kept running after it should have been stopped")


def context_info() -> dict[str, Any]:
    ctx = current_context()
    return {
        "job_id": ctx.job_id,
        "attempt": ctx.attempt,
        "has_deadline": ctx.deadline is not None,
        "remaining": ctx.remaining(),
        "cancelled": ctx.cancelled(),
        "pid": os.getpid(),
    }


async def acontext_info() -> dict[str, Any]:
    return context_info()


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def asleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


# Crashes: for the process backend only (elsewhere they would end the test run).


def exit_now(code: int = 3) -> None:
    os._exit(code)


def kill_self(signum: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), signum)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def exhaust_memory() -> None:
    bytearray(1 << 52)  # 4 PiB: refused at once with MemoryError


def unpicklable_result() -> Any:
    return threading.Lock()


class ExitAtPickle:
    """Raises ``SystemExit`` when pickled: the result of a job that must fail, not
    end its worker process."""

    def __reduce__(self) -> Any:
        raise SystemExit(1)


def returns_exit_at_pickle() -> ExitAtPickle:
    return ExitAtPickle()


class ExitAtUnpickle:
    """Pickles fine in a worker; unpickling it (in the pool's process) raises
    ``SystemExit``: a result that must fail its own job, not the pool."""

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return (sys.exit, (3,))


def returns_exit_at_unpickle() -> ExitAtUnpickle:
    return ExitAtUnpickle()


class Token:
    """A picklable object that can be weakly referenced: for tests that a pool lets
    go of the caller's objects once their job ended."""


def ignore(*args: Any) -> None:
    """Take any arguments, return None."""


async def aignore(*args: Any) -> None:
    pass


# ------------------------------------------------------------------- worker lifecycle
# What an initializer leaves in its worker, and who the worker is: a thread-local for
# threads, a context variable for asyncio consumers (a job runs in its consumer task's
# context), a global for processes (Dask runs initializers and jobs on different
# threads of one worker process).

_worker = threading.local()
_worker_state: Any = None
_worker_ids = iter(range(1, 1 << 62))
_aworker_state: contextvars.ContextVar[Any] = contextvars.ContextVar("aworker_state", default=None)
_aworker_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("aworker_id", default=None)
_ballast: list[bytes] = []


def set_worker_state(value: Any) -> None:
    """An initializer: ``worker_state()`` returns ``value`` in this worker from now on."""
    global _worker_state
    _worker.state = _worker_state = value


async def aset_worker_state(value: Any) -> None:
    _aworker_state.set(value)


def fail_init(message: str = "initializer failed") -> None:
    """An initializer that raises JobFailure."""
    raise JobFailure(message)


async def afail_init(message: str = "initializer failed") -> None:
    raise JobFailure(message)


def worker_state(value: Any = None) -> tuple[Any, str, Any]:
    """(What the initializer left here, this worker's identity: process and thread),
    then ``value``."""
    if not hasattr(_worker, "id"):
        _worker.id = next(_worker_ids)
    return getattr(_worker, "state", _worker_state), f"{os.getpid()}-{_worker.id}", value


async def aworker_state(value: Any = None) -> tuple[Any, str, Any]:
    ident = _aworker_id.get()
    if ident is None:  # a new consumer task: its own context
        ident = next(_worker_ids)
        _aworker_id.set(ident)
    return _aworker_state.get(), f"{os.getpid()}-{ident}", value


def leak(nbytes: int) -> int:
    """Keep ``nbytes`` more in this worker for good (a leaky extension); return the pid."""
    _ballast.append(b"x" * nbytes)
    return os.getpid()


_ASYNC: dict[Callable[..., Any], Callable[..., Any]] = {
    set_worker_state: aset_worker_state,
    fail_init: afail_init,
    worker_state: aworker_state,
    echo: aecho,
    add: aadd,
    fail: afail,
    fail_or_hold: afail_or_hold,
    fail_until: afail_until,
    hold: ahold,
    until_stopped: auntil_stopped,
    context_info: acontext_info,
    sleep: asleep,
    ignore: aignore,
}


def job_for(pool_or_runs: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The form of test job ``fn`` that a pool (or its ``capabilities.runs`` value) takes."""
    caps = getattr(pool_or_runs, "capabilities", None)
    runs = pool_or_runs if caps is None else caps.runs
    if runs == "coroutines":
        try:
            return _ASYNC[fn]
        except KeyError:
            raise ValueError(f"{fn.__name__} has no coroutine form") from None
    return fn


def crash_until(n: int, value: Any = None) -> tuple[Any, int]:
    """Kill the worker (os._exit(3)) before attempt ``n``; then return (value, attempt)."""
    attempt = current_context().attempt
    if attempt < n:
        os._exit(3)
    return (value, attempt)
