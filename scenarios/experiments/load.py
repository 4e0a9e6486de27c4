"""The load experiment: the scenario's job mix, at its arrivals, on one implementation.

Data flow::

    generator (this thread) ──submit at intended times──▶ implementation ──▶ workers
         │ records intended start times                        │          │ timed(): worker-side
         │                                                     ▼          ▼ start and end times
         └──────────── done-callbacks record when each job's result reached the caller

Latency of an open-loop job counts from its *intended* start, so a generator held
back by a full queue cannot hide the queueing (no coordinated omission). Each job's
time splits into queue wait (enqueued → taken by a worker) and dispatch (taken → its
function starts; pickling and IPC for processes) — on our pools, which record when a
worker took a job — then run, and return (function end → the caller's future resolved).

Before the clock every implementation is prepared alike (:func:`prepare`): every
worker runs a job at the same time, a latch they all reach, that carries the workload's
functions and the wrapper that times them (so each worker is up and has imported their
modules), then the first ``WARMUP_JOBS`` jobs run one at a time. An executor that runs
each job inside ``submit()`` has no workers to warm; its record says so.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import random
import resource
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from pools.testing.bench import MemoryPerJob, memory_per_job
from pools.testing.jobs import Gate, Latch, ahold, hold, ran_inside_submit, wait_held

from ..implementations import Implementation, Session
from ..result import Percentiles, Result, Timeline
from ..spec import Case, Scenario
from ..stats import percentile
from ..workload import resolve_mix
from . import Experiment

__all__ = [
    "EXPERIMENT",
    "MEM_JOBS",
    "WARMUP_JOBS",
    "LoadFindings",
    "atimed",
    "cpu_and_rss",
    "memory_pass",
    "outcome",
    "prepare",
    "run",
    "submit_hold",
    "timed",
    "warm",
]

WARMUP_JOBS = 20
#: set by a profile pass (scenarios.measure): a context manager around the timed part only
profile_window: Callable[[], AbstractContextManager[Any]] | None = None
MEM_JOBS = 100  # jobs of the memory pass (-benchmem), after the timed run
SAMPLE_EVERY = 0.005  # seconds between two samples of queue depth and busy workers
TIMELINE_POINTS = 200  # at most, kept in the results
ARMED_TIMEOUT = 60.0  # armed scenarios: the timeout on every job of ours, never reached
PREPARED = (
    "every worker ran a job at once (a latch they all reached) that carried the workload's functions and "
    f"the timing wrapper, then {WARMUP_JOBS} jobs one at a time; alive before the clock"
)


@dataclass(frozen=True)
class LoadFindings:
    #: queue depth and busy workers over time (our pools: the others have no gauges)
    timeline: Timeline | None = None
    #: queue wait per priority class, when the scenario has several
    queue_wait_ms_by_priority: dict[str, Percentiles] = field(default_factory=dict)
    #: the first failure of a job, "ExceptionType: message"
    first_error: str | None = None
    #: jobs of each workload of the mix, as drawn by weight
    mix: dict[str, int] = field(default_factory=dict)
    #: how the implementation was made, and then prepared before the clock
    prepared: str = ""


# ---------------------------------------------------------------- what the workers run


def timed(fn: Callable[..., Any], args: tuple) -> tuple[float, float, Any]:
    """Run ``fn(*args)``; return its worker-side start and end (monotonic) and its value."""
    start = time.monotonic()
    value = fn(*args)
    return start, time.monotonic(), value


async def atimed(fn: Callable[..., Any], args: tuple) -> tuple[float, float, Any]:
    start = time.monotonic()
    value = await fn(*args)
    return start, time.monotonic(), value


#: what :data:`PREPARED` becomes for an executor that runs each job inside ``submit()``
PREPARED_INLINE = (
    f"its jobs ran inside submit(), in the submitting thread: no workers to warm; then {WARMUP_JOBS} jobs one at a time"
)
WARM_LIMIT = 120.0  # seconds for every worker to start and reach the latch


def submit_hold(session: Session, gate: Gate, latch: Latch, carried: Any) -> concurrent.futures.Future[Any] | None:
    """Submit a job that arrives at ``latch`` and holds its worker until ``gate``
    opens, carrying ``carried``; None where the implementation ran it inside
    ``submit()``, in this thread (where waiting for the gate would wait for ever)."""
    if session.runs == "coroutines":
        return session.submit(ahold, (gate, latch, carried))
    job = functools.partial(hold, caller=(os.getpid(), threading.get_ident()))
    f = session.submit(job, (gate, latch, carried))
    return None if ran_inside_submit(f) else f


def warm(session: Session, carried: Any) -> int:
    """Every worker runs a job at the same time (a latch they all reach) that carries
    ``carried`` (the functions): so each one is up and has imported their module,
    and start-up is not timed, on any implementation. Returns how many of those jobs
    ran inside ``submit()`` instead (all ``session.workers`` of them where the
    submitting thread is the only worker)."""
    n = session.workers
    with Gate() as gate, Latch() as latch:  # the gate opens on leaving, whatever happens
        held = [f for f in (submit_hold(session, gate, latch, carried) for _ in range(n)) if f is not None]
        held = wait_held(latch, held, WARM_LIMIT)
        gate.open()
        for f in held:
            f.result()
    return n - len(held)


def prepare(
    session: Session, wrapper: Callable[..., Any], forms: list[Callable[..., Any]], jobs_plan: list[Job]
) -> str:
    """Before the clock: :func:`warm` with the workload's functions and the ``wrapper``
    that times each job (a worker process imports a function's module when it first
    meets it: had only one worker met the wrapper, which is all that the jobs below
    reach, the others would import this module and the harness behind it on the clock:
    1 ms sleeps on 8 process workers ran at 63% of the ideal so, 81% without it), then
    the first ``WARMUP_JOBS`` jobs, one at a time (that fits even queue_size=0 with
    overflow="reject"). Returns how the implementation was prepared."""
    inside = warm(session, (wrapper, *forms))
    for job in jobs_plan[:WARMUP_JOBS]:
        session.submit(wrapper, (job.fn, job.args)).exception()
    if not inside:
        return PREPARED
    if inside == session.workers:
        return PREPARED_INLINE
    n = session.workers
    return (
        f"{n - inside} of the {n} workers ran a job at once (a latch they reached) that carried the workload's "
        f"functions and the timing wrapper; {inside} of the warm-up's {n} jobs ran inside submit(), in the "
        f"submitting thread; then {WARMUP_JOBS} jobs one at a time"
    )


def memory_pass(impl: Implementation, sc: Scenario, jobs_plan: list[Job]) -> MemoryPerJob:
    """Memory per job (``go test -benchmem``), in a pass of its own after the timed
    run, on a fresh session of the implementation with room for the whole batch (so
    that every implementation holds all of it: bounded or not, alike): the first
    ``MEM_JOBS`` jobs of the plan, once untraced, then once under tracemalloc."""
    batch = jobs_plan[:MEM_JOBS]
    with impl.open(workers=sc.workers, queue_size=len(batch), overflow="block") as session:
        warm(session, tuple({job.fn for job in batch}))

        def submit_phase() -> Callable[[], list[Any]]:
            futures = [session.submit(job.fn, job.args) for job in batch]
            return lambda: [f.exception() for f in futures]

        submit_phase()()  # untraced: first calls, caches
        return memory_per_job(submit_phase, len(batch))


# ---------------------------------------------------------------- sampling


class Sampler:
    """Samples queue depth and busy workers on a daemon thread, for the report's
    "over time" plots. Reads two gauges: no lock, no snapshot."""

    def __init__(self, gauges: Callable[[], tuple[int, int] | None], t0: float) -> None:
        self.gauges, self.t0 = gauges, t0
        self.t: list[float] = []
        self.queued: list[int] = []
        self.busy: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poolbench-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            queued, busy = self.gauges() or (0, 0)
            self.t.append(time.monotonic() - self.t0)
            self.queued.append(queued)
            self.busy.append(busy)
            if self._stop.wait(SAMPLE_EVERY):
                return

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def timeline(self) -> Timeline:
        step = max(1, len(self.t) // TIMELINE_POINTS)
        return Timeline([round(x, 4) for x in self.t[::step]], self.queued[::step], self.busy[::step])


def cpu_and_rss() -> tuple[float, float]:
    """CPU seconds of this process and every descendant (workers, fork server),
    and resident memory of the descendants now (MB)."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    cpu = t.user + t.system + t.children_user + t.children_system  # children reaped already count too
    rss = 0.0
    for child in me.children(recursive=True):
        try:
            ct = child.cpu_times()
            cpu += ct.user + ct.system
            rss += child.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss / 2**20


# ---------------------------------------------------------------- the plan


def arrivals(sc: Scenario, n: int, rng: random.Random) -> list[float] | None:
    """Intended start offsets (seconds from t0) of an open-loop run, or None."""
    rate = sc.rate_per_s()
    if rate is None:
        return None
    if sc.arrival == "fixed":
        return [i / rate for i in range(n)]
    if sc.arrival == "poisson":
        t, out = 0.0, []
        for _ in range(n):
            out.append(t)
            t += rng.expovariate(rate)
        return out
    if sc.arrival == "bursty":  # bursts of `burst` jobs, spaced to keep the average rate
        return [(i // sc.burst) * sc.burst / rate for i in range(n)]
    raise ValueError(f"unknown arrival {sc.arrival!r}")


@dataclass(frozen=True)
class Job:
    fn: Callable[..., Any]
    args: tuple
    priority: int
    workload: int  # its index in the mix


def plan(sc: Scenario, forms: list[Callable[..., Any]], argsets: list[list[tuple]], rng: random.Random) -> list[Job]:
    """Which workload each job runs (drawn by weight), with the next of its argument
    tuples (round and round) and its priority (drawn from the priority mix)."""
    picks = rng.choices(range(len(forms)), [w.weight for w in sc.workloads], k=sc.jobs)
    prios = rng.choices([p.priority for p in sc.priorities], [p.weight for p in sc.priorities], k=sc.jobs)
    used = [0] * len(forms)
    out = []
    for k, prio in zip(picks, prios, strict=True):
        args = argsets[k][used[k] % len(argsets[k])]
        used[k] += 1
        out.append(Job(forms[k], args, prio, k))
    return out


def outcome(fut: Any) -> str:
    """A done future's terminal state: succeeded, failed, timed_out or cancelled."""
    status = getattr(fut, "status", None)  # our Job knows its terminal state
    if status is not None:
        return str(status)
    if fut.cancelled():
        return "cancelled"
    exc = fut.exception()
    if exc is None:
        return "succeeded"
    return "timed_out" if isinstance(exc, TimeoutError) else "failed"


def _drawn(mix: list[Any], jobs_plan: list[Job]) -> dict[str, int]:
    counts = dict.fromkeys((w.label for w in mix), 0)
    for job in jobs_plan:
        counts[mix[job.workload].label] += 1
    return counts


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------- the run


def run(case: Case, impl: Implementation, seed: int) -> Result:
    sc = case.scenario
    rng = random.Random(seed)
    mix = resolve_mix(sc.workloads, limit=sc.jobs, seed=seed)
    forms: list[Callable[..., Any]] = []
    for w in mix:
        fn = w.form(impl.runs)
        reason = w.unfit(impl.runs, pickles=False, implementation=impl.label)
        if reason or fn is None:  # no form is a reason: unfit says it
            raise RuntimeError(reason)
        forms.append(fn)
    wrapper = atimed if impl.runs == "coroutines" else timed
    jobs_plan = plan(sc, forms, [w.args for w in mix], rng)
    offsets = arrivals(sc, sc.jobs, rng)
    ours = impl.kind == "ours"
    retry = None
    if sc.retries and ours:
        import pools

        retry = pools.Retry(attempts=1 + sc.retries, backoff=0.001, max_backoff=0.01)
    timeout = sc.timeout if sc.timeout is not None or not (sc.armed and ours) else ARMED_TIMEOUT
    n = len(jobs_plan)
    sampler: Sampler | None = None
    values: list[tuple[float, float, Any]] = []  # arrival "map": what map returned

    with impl.open(workers=sc.workers, queue_size=sc.queue_size, overflow=sc.overflow) as session:
        gen = Generator(session, sc, jobs_plan, offsets, wrapper, ours=ours, timeout=timeout, retry=retry)
        prepared = prepare(session, wrapper, forms, jobs_plan)
        window = profile_window() if profile_window is not None else nullcontext()
        window.__enter__()
        cpu0, _ = cpu_and_rss()
        gen_cpu0 = time.thread_time()
        t0 = time.monotonic()
        if sc.arrival == "map":
            values = session.map(wrapper, [(job.fn, job.args) for job in jobs_plan])
            last_submit = t_end = time.monotonic()
            gen_cpu = time.thread_time() - gen_cpu0
        else:
            if session.gauges() is not None:
                sampler = Sampler(session.gauges, t0).start()
            try:
                gen.submit_all(t0)
                last_submit = time.monotonic()
                gen_cpu = time.thread_time() - gen_cpu0
                gen.wait_all()
            finally:
                if sampler is not None:
                    sampler.stop()
            t_end = max([d for d in gen.done_at if d] or [last_submit])
        cpu1, workers_rss = cpu_and_rss()
        window.__exit__(None, None, None)
        retried = session.retried()

    mem = memory_pass(impl, sc, jobs_plan) if sc.benchmem else None
    intended, done_at, futures, rejected = gen.intended, gen.done_at, gen.futures, gen.rejected
    counts = dict.fromkeys(("succeeded", "failed", "timed_out", "cancelled"), 0)
    latencies, waits, dispatch, runs, returns = [], [], [], [], []
    wait_by_prio: dict[int, list[float]] = {}
    first_error = None
    if sc.arrival == "map":
        counts["succeeded"] = len(values)
        runs = [end - start for start, end, _ in values]
    for i, fut in enumerate(futures):
        if fut is None:
            continue
        state = outcome(fut)
        counts[state] = counts.get(state, 0) + 1
        if state != "succeeded":
            if first_error is None and state == "failed":
                exc = fut.exception()
                first_error = f"{type(exc).__name__}: {exc}"[:300]
            continue
        start, end, _ = fut.result()
        latencies.append(done_at[i] - intended[i])
        runs.append(end - start)
        returns.append(max(0.0, done_at[i] - end))
        if ours:
            waits.append(fut.started_at - fut.enqueued_at)
            dispatch.append(max(0.0, start - fut.started_at))
            wait_by_prio.setdefault(jobs_plan[i].priority, []).append(fut.started_at - fut.enqueued_at)
    wall = max(1e-9, t_end - t0)
    span = max(1e-9, last_submit - t0)
    offered = sc.rate_per_s()
    achieved = (n - 1) / span if offered and n > 1 else None  # n arrivals span n - 1 gaps
    # how far the last submission fell behind the schedule, as a share of the schedule
    behind = (last_submit - intended[-1]) / max(1e-9, offsets[-1]) if offsets and n > 1 and offsets[-1] else None
    # Open loop: its share of a core while it submitted on schedule; closed: of the whole
    # run, since a closed loop's generator submits at once and then only waits.
    gen_util = gen_cpu / (span if offsets else wall)
    findings = LoadFindings(
        timeline=sampler.timeline() if sampler is not None else None,
        queue_wait_ms_by_priority={
            str(p): Percentiles(_ms(percentile(v, 0.5)), _ms(percentile(v, 0.99)), len(v))
            for p, v in sorted(wait_by_prio.items())
        }
        if len(sc.priorities) > 1
        else {},
        first_error=first_error,
        mix=_drawn(mix, jobs_plan),
        prepared=f"{impl.prepared}; {prepared}"
        + (
            ""
            if ours or sc.arrival == "map"
            else f"; the generator kept at most {sc.workers + sc.queue_size} jobs in flight (workers + queue_size), "
            "as our pools' bounded queue does"
        ),
    )
    return Result(
        jobs=n,
        completed=counts["succeeded"],
        failed=counts["failed"],
        timed_out=counts["timed_out"],
        cancelled=counts["cancelled"],
        rejected=rejected,
        retried=retried,
        wall_s=wall,
        throughput=counts["succeeded"] / wall,
        lat_p50_ms=_ms(percentile(latencies, 0.50)),
        lat_p95_ms=_ms(percentile(latencies, 0.95)),
        lat_p99_ms=_ms(percentile(latencies, 0.99)),
        lat_max_ms=_ms(max(latencies) if latencies else None),
        queue_wait_ms=_ms(_mean(waits)),
        dispatch_ms=_ms(_mean(dispatch)),
        run_ms=_ms(_mean(runs)),
        return_ms=_ms(_mean(returns)),
        cpu_s=cpu1 - cpu0,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + workers_rss,
        mem_bytes_per_job=None if mem is None else mem.bytes,
        mem_allocs_per_job=None if mem is None else mem.allocations,
        mem_peak_bytes_per_job=None if mem is None else mem.peak_bytes,
        offered_rate=offered,
        achieved_rate=achieved,
        generator_cpu=gen_util,
        # The load generator, not the implementation, limits the run when it kept a core
        # busy, or could not submit at the offered rate (with overflow="block" a slow
        # generator is the pool's back-pressure, not a limit): it lagged its own
        # schedule (the random Poisson draw, not the nominal rate) by 5%.
        generator_bound=bool(gen_util > 0.9 or (behind is not None and behind > 0.05 and sc.overflow == "reject")),
        findings=findings,
    )


class Generator:
    """The load generator: submits the plan at its intended times (at once in a closed
    loop, one after another in a serial one) and records, in each job's done-callback,
    when its result reached the caller.

    An implementation without a bounded queue gets the same bound from the generator:
    at most ``workers + queue_size`` jobs in flight (a semaphore, as a user would bound
    an executor), which our pools' bounded queue enforces with ``overflow="block"``. So
    the generator is held back alike, and a job's latency means the same on every one."""

    def __init__(
        self,
        session: Session,
        sc: Scenario,
        jobs: list[Job],
        offsets: list[float] | None,
        wrapper: Callable[..., Any],
        *,
        ours: bool,
        timeout: float | None,
        retry: Any,
    ) -> None:
        self.session, self.sc, self.jobs, self.offsets, self.wrapper = session, sc, jobs, offsets, wrapper
        self.ours, self.timeout, self.retry = ours, timeout, retry
        n = len(jobs)
        self.intended = [0.0] * n
        self.done_at = [0.0] * n
        self.futures: list[Any] = [None] * n
        self.rejected = 0
        self.serial = sc.arrival == "serial"
        # Serial: released by each job's done-callback, for the next submit. Else the
        # callbacks count down and only the last one wakes the generator, so that its
        # waiting adds no wake-up a job (and no GIL hand-off) to the process measured.
        self.finished = threading.Semaphore(0)
        self._left, self._left_lock, self._all_done = n, threading.Lock(), threading.Event()
        self.room = None if ours else threading.BoundedSemaphore(sc.workers + sc.queue_size)

    def _done(self, i: int, _fut: Any) -> None:
        self.done_at[i] = time.monotonic()
        if self.room is not None:
            self.room.release()
        if self.serial:
            self.finished.release()
        else:
            self._one_less()

    def _one_less(self) -> None:
        with self._left_lock:  # callbacks run on several threads at once (a contender's workers)
            self._left -= 1
            last = self._left == 0
        if last:
            self._all_done.set()

    def _options(self, i: int, job: Job) -> dict[str, Any]:
        if not self.ours:
            return {}
        armed = self.sc.armed
        return {
            "priority": i & 1 if armed else job.priority,
            "timeout": self.timeout,
            "retry": self.retry,
            "wait": self.sc.wait,
        }

    def submit_all(self, t0: float) -> None:
        import pools

        serial = self.serial
        for i, job in enumerate(self.jobs):
            if self.offsets is not None:
                self.intended[i] = t0 + self.offsets[i]
                delay = self.intended[i] - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if self.offsets is None:  # closed: from when the generator was ready to submit it
                self.intended[i] = time.monotonic()
            if self.room is not None:  # held back here as our pools hold it back in submit()
                self.room.acquire()
            try:
                fut = self.session.submit(self.wrapper, (job.fn, job.args), **self._options(i, job))
            except pools.QueueFull:
                self.rejected += 1
                if not serial:
                    self._one_less()  # no callback will come for it
                continue
            fut.add_done_callback(functools.partial(self._done, i))
            self.futures[i] = fut
            if serial:  # the next job only after this one's result reached us
                self.finished.acquire()

    def wait_all(self) -> None:
        """Wait for the done-callbacks, not the futures: a future wakes its waiters
        before it runs its callbacks, and done_at[i] is written by the callback."""
        if self.serial or not self.jobs:
            return
        self._all_done.wait()


def note(f: LoadFindings) -> str:
    parts = []
    if f.queue_wait_ms_by_priority:
        parts.append(
            "queue wait p99 by priority: "
            + ", ".join(f"{p}: {v.p99:.1f} ms" for p, v in f.queue_wait_ms_by_priority.items() if v.p99 is not None)
        )
    if f.first_error:
        parts.append(f"first error: {f.first_error}")
    return " | ".join(parts)


EXPERIMENT = Experiment("load", run, LoadFindings, note=note)
