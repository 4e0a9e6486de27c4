"""The "asyncio" backend: coroutine functions on an event loop, at most W at once.

Data flow::

    submit()/asubmit() ─push─▶ Pool heap ─(call_soon[_threadsafe]: _pump)─▶ event loop
                                   ▲                                         │
                                   │ take, one job at a time                 ▼
                                   └──────────── consumer tasks (≤ W, made on demand,
                                                 gone when the heap is empty)
                                                   │ await fn(*args)
                                                   ▼
                                             finish_and_take()
    Timer thread ── earliest deadline (DeadlineWatch) ──▶ JobTimeout, then as a cancel
    job.cancel() ─▶ stop_attempt ─(call_soon_threadsafe)─▶ task.cancel() on the consumer
                                                            that runs that very attempt

The loop is the one running where the pool is started (``async with pool`` or
``pool.start()`` inside a coroutine): jobs submitted from it pay no thread hop.
Started from synchronous code, the pool runs its own loop on a daemon thread.

Lifecycle: each consumer awaits the pool's ``initializer`` (a coroutine function)
before its first job; one that raises breaks the pool. ``resize`` changes how many
consumers may run; the extra ones end after their job.

A plain blocking function is refused at submit (``InvalidCallable``). A coroutine
that blocks without awaiting (``time.sleep``, CPU work) stalls the whole loop:
every other job of the pool waits until it yields (timeouts are still reported at
their deadline, from the pool's timer thread, but cancel the task only then). Run blocking
code with ``await asyncio.to_thread(fn)`` inside the job, or use the thread backend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal

from .exceptions import InvalidArgument, InvalidCallable, PoolClosed, PoolError
from .lowlevel import (
    Backend,
    Capabilities,
    DeadlineWatch,
    Dispatcher,
    Job,
    JobContext,
    Outcome,
    is_coroutine_function,
    reset_current_context,
    run_private_loop,
    set_current_context,
)

__all__ = ["AsyncioBackend"]

OK: Final = Outcome.OK
ERROR: Final = Outcome.ERROR
CANCELLED: Final = "cancelled"  # how _run_one says that the job cancelled itself


class _Consumer:
    __slots__ = ("attempt", "cancel_requested", "job", "task")

    task: asyncio.Task[None]  # set by the task itself, first thing (see _consume)

    def __init__(self) -> None:
        self.job: Job[Any] | None = None
        self.attempt = 0
        self.cancel_requested = False


class AsyncioBackend(Backend):
    name = "asyncio"
    capabilities = Capabilities(
        runs="coroutines",
        stops_running_jobs=True,
        survives_crashes=False,
        carries_contextvars=False,  # jobs run in consumer tasks, not in the submitter's context
        no_crash_recovery=(
            "the 'asyncio' backend runs jobs inside this process: a crashing job (os._exit, a segfault) "
            "ends the whole program, so crash recovery does not apply"
        ),
        lifecycle=frozenset({"initializer", "resize"}),
        lifecycle_not_applicable=(
            (
                "max_tasks_per_worker",
                "its workers are consumer tasks on one event loop: a new task starts with nothing "
                "that the old one could have left behind, so there is nothing to recycle",
            ),
            (
                "max_memory_per_worker",
                "its consumer tasks share this process's memory: none has an RSS of its own",
            ),
            (
                "min_workers",
                "its consumer tasks are made for waiting jobs and end as soon as the queue is empty: "
                "none is kept idle, so there is no minimum to keep",
            ),
            (
                "idle_timeout",
                "its consumer tasks end as soon as the queue is empty: none idles",
            ),
        ),
    )

    def __init__(self, dispatcher: Dispatcher, *, workers: int | None = None) -> None:
        super().__init__(dispatcher)
        self._lock = dispatcher.lock
        self._broken = False  # the initializer failed: no consumer starts any more
        init = dispatcher.options.initializer
        if init is not None and not is_coroutine_function(init):
            raise InvalidArgument(
                f"the 'asyncio' backend awaits its initializer in each consumer task, so it must be a "
                f"coroutine function (async def), got {init!r}"
            )

    @classmethod
    def default_workers(cls) -> int:
        return 100

    def prepare(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if not callable(fn):
            raise InvalidCallable(f"fn must be callable, got {fn!r}")
        if not is_coroutine_function(fn):
            raise InvalidCallable(
                f"the 'asyncio' backend runs coroutine functions (async def), but {fn!r} is not one: "
                "a plain blocking call would stall every job on the event loop. Wrap it "
                "(async def job(): return await asyncio.to_thread(fn, ...)) or use the 'thread' backend"
            )

    # ------------------------------------------------------------------ loop

    def start(self) -> None:
        self._consumers: dict[asyncio.Task[None], _Consumer] = {}
        self._deadlines = DeadlineWatch(self.dispatcher.timer, self._on_deadline)
        self._n_consumers = 0  # consumer tasks alive
        self._busy_consumers = 0  # of which running a job (or still unwinding a cancelled one)
        self._pump_scheduled = False
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            self.home_loop = self._loop
            self._thread: threading.Thread | None = None
            # asyncio.run() cancels every task on its way out: this one's cancellation
            # tells the pool that its loop is ending, even when no job is running.
            self._watchdog = self._loop.create_task(self._watch(), name=f"{self.dispatcher.name}-watchdog")
            return
        ready = threading.Event()
        self._loop = self.home_loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready,), name=f"{self.dispatcher.name}-loop", daemon=True
        )
        self._thread.start()
        ready.wait()

    def _run_loop(self, ready: threading.Event) -> None:
        run_private_loop(self._loop, ready)

    async def _watch(self) -> None:
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            if not self._stopping:
                self._loop_ending()
            raise

    def _ending(self) -> bool:
        """Whether a cancelled consumer task means the end: the pool is stopping its
        consumers, or asyncio.run() is cancelling every task of the loop (the
        watchdog's cancellation tells the two apart from a job cancelling its own task)."""
        return (
            self._stopping
            or (self._thread is not None and self._loop_gone())
            or (self._watchdog is not None and self._watchdog.cancelling() > 0)
        )

    def _loop_ending(self) -> None:
        """The loop the pool runs on is going away: no job of it can run any more."""
        self.dispatcher.close(self._loop_gone_message())

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the jobs run on."""
        return self._loop

    def _in_loop(self) -> bool:
        """True when called from code running on the pool's loop."""
        try:
            return asyncio.get_running_loop() is getattr(self, "_loop", None)
        except RuntimeError:
            return False

    def _loop_gone(self) -> bool:
        return self._loop.is_closed() or (self._thread is None and not self._loop.is_running())

    def _loop_gone_message(self) -> str:
        return (
            f"the event loop that pool {self.dispatcher.name} ran on has stopped (its asyncio.run() "
            "ended): start the pool inside that loop with 'async with pool', or from "
            "synchronous code to give it a loop of its own"
        )

    def check_open_locked(self) -> None:
        if asyncio._get_running_loop() is self._loop:
            return  # submitted from the pool's own loop, which is therefore running
        if self._loop_gone():
            raise PoolClosed(self._loop_gone_message())

    def before_drain(self) -> None:
        if self._loop_gone():  # nothing can run the jobs any more
            self.dispatcher.close(self._loop_gone_message())

    def _call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._in_loop():
            self._loop.call_soon(fn, *args)
        else:
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed: shutdown's before_drain cancels what is left
                pass

    def refuse_blocking(self, call: str) -> None:
        if not self._in_loop():
            return
        if call == "submit":
            raise PoolError(
                "the queue is full and this pool runs on the calling event loop, so blocking "
                "here would stall it: use 'await pool.asubmit(...)', pass overflow='reject', "
                "or give the queue more room"
            )
        raise PoolError(
            "shutdown(wait=True) would block the event loop that runs this pool's jobs: "
            "use 'await pool.ashutdown()' or 'async with pool', not 'with pool'"
        )

    # ------------------------------------------------------------------ consumers

    def wake_locked(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._call_in_loop(self._pump)

    def _pump(self) -> None:
        """Start consumers for waiting jobs that no consumer will take."""
        with self._lock:
            self._pump_scheduled = False
            if self._stopping or self._broken:
                return
            idle = self._n_consumers - self._busy_consumers  # between two jobs: will take one
            spawn = min(self.dispatcher.queued - idle, self.dispatcher.workers - self._n_consumers)
            if spawn <= 0:
                return
            self._n_consumers += spawn
        for _ in range(spawn):
            self._loop.create_task(self._consume(_Consumer()))

    async def _consume(self, me: _Consumer) -> None:
        # The task registers itself: under an eager task factory (Python 3.12+) it runs
        # inside create_task, and may take jobs or even end before create_task returns.
        task = asyncio.current_task()
        assert task is not None  # a coroutine that a task runs
        me.task = task
        self._consumers[task] = me
        lock = self._lock
        alive, busy = True, False
        try:
            options = self.dispatcher.options
            if options.initializer is not None:
                try:
                    await options.initializer(*options.initargs)
                except Exception as exc:  # noqa: BLE001 - it breaks the pool, as in concurrent.futures
                    with lock:
                        self._broken = True
                    self.dispatcher.initializer_failed(exc)
                    return
            while True:
                with lock:
                    if busy:
                        self._busy_consumers -= 1
                        busy = False
                    job = self.dispatcher.take_locked()
                    if job is None:
                        self._n_consumers -= 1
                        alive = False
                        return
                    self._busy_consumers += 1
                    busy = True
                while job is not None:
                    attempt = job.attempt
                    outcome, value = await self._run_one(me, job, attempt)
                    if outcome is OK or outcome is ERROR:
                        # Finish and take the next job in one round of the lock.
                        job = self.dispatcher.finish_and_take(job, attempt, outcome, value)[1]
                    else:
                        self._settle_other(job, attempt, outcome, value)
                        job = None
                    del value
        finally:
            if alive or busy:  # left by an exception (cancelled from outside)
                with lock:
                    self._n_consumers -= alive
                    self._busy_consumers -= busy
            self._consumers.pop(me.task, None)

    async def _run_one(
        self, me: _Consumer, job: Job[Any], attempt: int
    ) -> tuple[Outcome | Literal["cancelled"] | None, Any]:
        """Run one attempt; return its (outcome, value) for the caller to settle."""
        fn, args = job.fn, job.args  # read before the check: see _release_locked
        if fn is None or args is None or not self.dispatcher.is_current(job, attempt):
            return None, None  # cancelled (from another thread) between the take and here: settled
        me.job, me.attempt, me.cancel_requested = job, attempt, False
        job.backend_slot = me
        deadline = None if job.timeout is None else job.started_at + job.timeout
        token = set_current_context(JobContext(job.job_id, attempt, deadline))
        if deadline is not None:
            # Watched from the pool's timer thread, which settles the timeout and
            # cancels this task (as job.cancel() does): cheaper per job than an
            # asyncio.timeout_at scope, which arms and cancels a loop timer each time.
            self._deadlines.arm(me, deadline, job, attempt, me)
        outcome: Outcome | Literal["cancelled"] | None
        try:
            value = await fn(*args)
            outcome = OK
        except asyncio.CancelledError:
            if me.cancel_requested:  # our own job.cancel(): the job is settled already
                value, outcome = None, None
            elif me.task.cancelling() and self._ending():
                # Our task was cancelled from outside: the loop is ending (asyncio.run
                # cancels every task on its way out). Settle everything, then leave.
                me.job = None
                self._loop_ending()
                raise
            else:
                # The job raised CancelledError, or cancelled the task it runs in
                # (asyncio.current_task().cancel()): it cancelled itself.
                while me.task.cancelling():
                    me.task.uncancel()
                value, outcome = None, CANCELLED
        except (KeyboardInterrupt, SystemExit) as exc:
            if self._thread is None:  # the caller's own loop: let it see them, as asyncio does
                me.job = None
                self.dispatcher.finish(job, attempt, ERROR, exc)
                raise
            value, outcome = exc, ERROR  # our private loop: just this job's error
        except BaseException as exc:  # noqa: BLE001 - the job's error goes to its caller
            value, outcome = exc, ERROR
        finally:
            reset_current_context(token)
            if deadline is not None:
                self._deadlines.disarm(me)
        me.job = None
        if me.cancel_requested:  # our cancel arrived (the job may have swallowed it)
            me.cancel_requested = False
            if me.task.cancelling():
                me.task.uncancel()
        return outcome, value

    def resize_locked(self, workers: int) -> None:
        self.wake_locked()  # more consumers if jobs wait; the extra ones end after their job

    def alive_locked(self) -> int:
        return self._n_consumers

    def _settle_other(
        self, job: Job[Any], attempt: int, outcome: Outcome | Literal["cancelled"] | None, value: Any
    ) -> None:
        if outcome is CANCELLED:
            job.cancel()
        # None: settled already (our own cancel, or the deadline watch's timeout)

    def _on_deadline(self, job: Job[Any], attempt: int, me: _Consumer) -> None:
        # The consumer that runs this attempt is named here, not looked up when the
        # cancel reaches the loop: by then a retry of the job may be running on
        # another consumer (job.backend_slot), and this attempt would run on.
        if self.dispatcher.timed_out(job, attempt, preempted=True):
            if self._in_loop():
                self._cancel_consumer(me, job, attempt)
            else:
                self._call_in_loop(self._cancel_consumer, me, job, attempt)

    def stop_attempt(self, job: Job[Any], attempt: int) -> None:
        if self._in_loop():
            self._cancel_attempt(job, attempt)
        else:
            self._call_in_loop(self._cancel_attempt, job, attempt)

    def _cancel_attempt(self, job: Job[Any], attempt: int) -> None:
        # A cancel ends the job for good, so no other attempt of it can have
        # started since: its backend_slot is the consumer running this attempt.
        me = job.backend_slot
        if isinstance(me, _Consumer):
            self._cancel_consumer(me, job, attempt)

    @staticmethod
    def _cancel_consumer(me: _Consumer, job: Job[Any], attempt: int) -> None:
        if me.job is job and me.attempt == attempt and not me.cancel_requested:
            me.cancel_requested = True
            me.task.cancel()

    # ------------------------------------------------------------------ stop

    async def _stop_consumers(self) -> None:
        tasks = list(self._consumers)
        if self._watchdog is not None:
            tasks.append(self._watchdog)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self, deadline: float | None) -> int:
        with self._lock:
            self._stopping = True
        if self._loop.is_closed():
            return 0
        grace = 5.0 if deadline is None else max(0.0, deadline - time.monotonic()) + 1.0
        try:
            fut = asyncio.run_coroutine_threadsafe(self._stop_consumers(), self._loop)
            fut.result(grace)
        except (RuntimeError, concurrent.futures.TimeoutError):
            pass  # the loop stopped (its owner's asyncio.run ended) or a job ignores cancellation
        if self._thread is not None:
            try:
                self._loop.call_soon_threadsafe(self._loop.stop)
            except RuntimeError:
                pass
            self._thread.join(grace)
        return 0
