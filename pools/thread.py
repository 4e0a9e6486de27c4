"""The "thread" backend: plain callables on a fixed set of daemon threads.

Data flow::

    submit() ─push─▶ Pool heap ─notify one─▶ worker threads (W, wait on the pool's lock)
                                                 │ take ─ run fn in the submitter's contextvars
                                                 ▼
                                           finish_and_take()
    Timer thread ── earliest deadline ──▶ DeadlineWatch sweep ──▶ timed_out(): JobTimeout,
                                        its context is cancelled, its thread is
                                        *abandoned* and a replacement thread starts

Lifecycle: each thread runs the pool's ``initializer`` before its first job (one
that raises breaks the pool); after ``max_tasks_per_worker`` jobs a thread leaves
and a new one takes its place (thread-local state starts afresh); above
``min_workers``, a thread idle for ``idle_timeout`` leaves, and threads are started
again on demand, up to ``workers``; ``resize`` starts threads or lets the extra
ones leave once their job ends.

A Python thread cannot be stopped from outside. A timed-out or cancelled job ends
for the caller at once; its thread keeps running the function (counted in
``stats().abandoned``) until the function returns — at once if it watches
``current_context()`` — and then exits.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .lowlevel import (
    Backend,
    Capabilities,
    DeadlineWatch,
    Dispatcher,
    Job,
    JobContext,
    Outcome,
    cancel_context,
    check_plain_callable,
    set_current_context,
)

__all__ = ["ThreadBackend"]

OK, ERROR = Outcome.OK, Outcome.ERROR


def _call_in_job(ctx: JobContext, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    set_current_context(ctx)  # runs inside the job's own copy of the submitter's context
    return fn(*args)


class ThreadBackend(Backend):
    name = "thread"
    capabilities = Capabilities(
        runs="callables",
        stops_running_jobs=False,  # cooperative: the job's context is cancelled
        survives_crashes=False,
        carries_contextvars=True,
        no_crash_recovery=(
            "the 'thread' backend runs jobs inside this process: a crashing job (os._exit, a segfault) "
            "ends the whole program, so crash recovery does not apply"
        ),
        lifecycle=frozenset({"initializer", "max_tasks_per_worker", "min_workers", "idle_timeout", "resize"}),
        lifecycle_not_applicable=(
            (
                "max_memory_per_worker",
                "its workers are threads sharing this process's memory: no thread has an RSS of its "
                "own, and replacing one frees nothing; use the 'process' backend",
            ),
        ),
    )

    def __init__(self, dispatcher: Dispatcher, *, workers: int | None = None) -> None:
        super().__init__(dispatcher)
        self._lock = dispatcher.lock
        self._work = threading.Condition(dispatcher.lock)  # idle workers wait here
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._broken = False  # the initializer failed: no thread starts any more
        self._alive = 0  # threads that count as workers (not abandoned ones)
        self._thread_ids = iter(range(1, 1 << 62))

    @classmethod
    def default_workers(cls) -> int:
        return min(32, (os.cpu_count() or 1) + 4)  # as ThreadPoolExecutor

    def prepare(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        check_plain_callable(self.name, fn)

    def start(self) -> None:
        self._deadlines = DeadlineWatch(self.dispatcher.timer, self._on_deadline)
        low = self.dispatcher.options.min_workers
        with self._lock:
            for _ in range(self.dispatcher.workers if low is None else low):
                self._spawn_locked()

    def _can_grow_locked(self) -> bool:
        return self._alive < self.dispatcher.workers and not self._stopping and not self._broken

    def _spawn_locked(self) -> None:
        self._alive += 1
        thread = threading.Thread(
            target=self._worker, name=f"{self.dispatcher.name}-worker-{next(self._thread_ids)}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def wake_locked(self) -> None:
        if self._work._waiters:  # type: ignore[attr-defined]  # only a sleeping worker needs waking
            self._work.notify()
        elif self._can_grow_locked():  # below the size (idle threads left, or it grew): one more
            self._spawn_locked()

    def resize_locked(self, workers: int) -> None:
        if self._alive > workers:
            self._work.notify_all()  # idle threads above the size leave; busy ones after their job
            return
        grow = workers - self._alive
        if self.dispatcher.options.min_workers is not None:
            grow = min(grow, self.dispatcher.waiting_locked())  # the others on demand
        for _ in range(grow):
            if self._can_grow_locked():
                self._spawn_locked()

    def alive_locked(self) -> int:
        return self._alive

    def _leave_locked(self, me: threading.Thread) -> None:
        self._alive -= 1
        self._threads.discard(me)

    def _initialize(self, me: threading.Thread) -> bool:
        options = self.dispatcher.options
        try:
            options.initializer(*options.initargs)
        except BaseException as exc:  # noqa: BLE001 - it breaks the pool, as in concurrent.futures
            with self._lock:
                self._broken = True
                self._leave_locked(me)
            self.dispatcher.initializer_failed(exc)
            return False
        return True

    def _worker(self) -> None:
        me = threading.current_thread()
        lock = self._lock
        dispatcher = self.dispatcher
        take_locked, finish, finish_and_take, is_current = (
            dispatcher.take_locked,
            dispatcher.finish,
            dispatcher.finish_and_take,
            dispatcher.is_current,
        )
        options = dispatcher.options
        if options.initializer is not None and not self._initialize(me):
            return
        budget, idle, low = options.max_tasks_per_worker, options.idle_timeout, options.min_workers or 0
        done = 0
        job: Job[Any] | None = None
        while True:
            if job is None:
                with lock:
                    while True:
                        surplus = self._alive > dispatcher.workers  # shrunk: idle threads above it leave
                        if not surplus:
                            job = take_locked()
                            if job is not None:
                                break
                        if surplus or self._stopping or self._broken:
                            self._leave_locked(me)
                            return
                        if idle is not None and self._alive > low:
                            if not self._work.wait(idle):  # idle that long: leave, unless a job came
                                job = take_locked()
                                if job is not None:
                                    break
                                if self._alive > low:
                                    self._leave_locked(me)
                                    return
                        else:
                            self._work.wait()
            attempt = job.attempt
            deadline = None if job.timeout is None else job.started_at + job.timeout
            ctx = job.backend_slot = JobContext(job.job_id, attempt, deadline)
            fn, args, ctxvars = job.fn, job.args, job.submitter_context  # read before the check (see Job)
            # All three are set while the job is live (this backend carries contextvars),
            # and cleared together when it ends.
            if fn is None or args is None or ctxvars is None or not is_current(job, attempt):
                # Cancelled between the take and here: it must not run (its outcome
                # will not count). The canceller may have looked for this context
                # before it existed, so cancel it ourselves.
                cancel_context(ctx)
                value, outcome = None, ERROR
            else:
                if deadline is not None:
                    self._deadlines.arm(ctx, deadline, job, attempt)
                try:
                    value = (ctxvars if attempt == 1 else ctxvars.copy()).run(_call_in_job, ctx, fn, args)
                    outcome = OK
                except BaseException as exc:  # noqa: BLE001 - the job's error goes to its caller
                    value, outcome = exc, ERROR
                if deadline is not None:
                    self._deadlines.disarm(ctx)  # else the watch keeps the job alive until its deadline
            del fn, args, ctxvars
            done += 1
            retire = budget is not None and done >= budget
            if retire or self._alive > dispatcher.workers:  # (an int read: GIL) leaving, or maybe
                counted, job = finish(job, attempt, outcome, value), None
            else:
                # Finish this job and take the next in one round of the lock.
                counted, job = finish_and_take(job, attempt, outcome, value)
            del value
            if not counted:
                # The attempt was settled from outside while it ran: this thread was
                # abandoned and replaced, so it leaves now that the function returned.
                with lock:
                    dispatcher.add_abandoned_locked(-1)
                    self._threads.discard(me)
                return
            if retire:  # recycled: a fresh thread takes this one's place
                with lock:
                    dispatcher.add_recycled_locked()
                    self._leave_locked(me)
                    if self._can_grow_locked() and (
                        options.min_workers is None or dispatcher.waiting_locked() or self._alive < low
                    ):
                        self._spawn_locked()
                return

    def _on_deadline(self, job: Job[Any], attempt: int) -> None:
        if self.dispatcher.timed_out(job, attempt, preempted=True):
            self.stop_attempt(job, attempt)

    def preempted_locked(self, job: Job[Any]) -> None:
        self.dispatcher.add_abandoned_locked(1)
        self._alive -= 1  # its thread is abandoned: no longer a worker
        if self._can_grow_locked():
            self._spawn_locked()

    def stop_attempt(self, job: Job[Any], attempt: int) -> None:
        ctx = job.backend_slot
        if isinstance(ctx, JobContext) and ctx.attempt == attempt:
            cancel_context(ctx)

    def stop(self, deadline: float | None) -> int:
        with self._lock:
            self._stopping = True
            self._work.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is threading.current_thread():
                continue  # shutdown() called from inside a job
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for t in threads if t is not threading.current_thread())
