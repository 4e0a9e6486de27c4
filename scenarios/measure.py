"""One measurement: one case on one backend, in this process, which holds nothing
but the pool under test (the runner starts a fresh ``python -m scenarios.measure``
for each, as pyperf does).

Data flow::

    generator (this thread) ──submit at intended times──▶ pool ──▶ workers
         │ records intended / submitted time            │          │ timed(): worker-side
         │                                              ▼          ▼ start and end times
         └──────────── done-callbacks record when each job's result reached the caller

Latency of an open-loop job counts from its *intended* start, so a generator held
back by a full queue cannot hide the queueing (no coordinated omission). Each
job's time splits into queue wait (enqueued → taken by a worker), dispatch (taken →
its function starts; pickling and IPC for processes), run, and return (function
end → the caller's future resolved).

Reads a JSON request on stdin, writes one JSON line of metrics on stdout.
"""

from __future__ import annotations

import functools
import json
import random
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pools

from . import jobtypes
from .spec import Case
from .stats import percentile

WARMUP_JOBS = 20
SAMPLE_EVERY = 0.005  # seconds between two samples of queue depth and busy workers
TIMELINE_POINTS = 200  # at most, kept in the results


class Sampler:
    """Samples the pool's queue depth and busy workers on a daemon thread, for the
    report's "over time" plots. Reads two gauges: no lock, no snapshot."""

    def __init__(self, pool: pools.Pool, t0: float) -> None:
        self.pool, self.t0 = pool, t0
        self.t: list[float] = []
        self.queued: list[int] = []
        self.busy: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poolbench-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.t.append(time.monotonic() - self.t0)
            self.queued.append(self.pool.queued)
            self.busy.append(self.pool.busy)
            if self._stop.wait(SAMPLE_EVERY):
                return

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def timeline(self) -> dict[str, list]:
        step = max(1, len(self.t) // TIMELINE_POINTS)
        return {
            "t": [round(x, 4) for x in self.t[::step]],
            "queued": self.queued[::step],
            "busy": self.busy[::step],
        }


def timed(name: str, params: dict) -> tuple[float, float]:
    """Run job type ``name``; return its worker-side start and end (monotonic)."""
    start = time.monotonic()
    jobtypes.REGISTRY[name].sync(params)
    return (start, time.monotonic())


async def atimed(name: str, params: dict) -> tuple[float, float]:
    start = time.monotonic()
    await jobtypes.REGISTRY[name].coro(params)
    return (start, time.monotonic())


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _record_done(done_at: list[float], finished: threading.Semaphore, i: int, _job: Any) -> None:
    done_at[i] = time.monotonic()
    finished.release()


def _cpu_and_rss() -> tuple[float, float]:
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


def _arrivals(sc, n: int, rng: random.Random) -> list[float] | None:
    """Intended start offsets (seconds from t0) of an open-loop run, or None."""
    rate = sc.rate()
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


def _plan(sc, n: int, rng: random.Random) -> list[tuple[str, dict, int]]:
    weights = [w for w, _, _ in sc.mix]
    prio_weights = [w for w, _ in sc.priorities]
    jobs = rng.choices(sc.mix, weights, k=n)
    prios = rng.choices([p for _, p in sc.priorities], prio_weights, k=n)
    return [(name, jobtypes.validate(name, params), prio) for (_, name, params), prio in zip(jobs, prios, strict=False)]


def run_load(case: Case, backend: str, seed: int = 0) -> dict[str, Any]:
    sc = case.scenario
    rng = random.Random(seed)
    pool = pools.create_pool(backend, workers=sc.workers, queue_size=sc.queue_size, overflow=sc.overflow)
    fn: Callable[..., Any] = atimed if pool.capabilities.runs == "coroutines" else timed
    retry = pools.Retry(attempts=1 + sc.retries, backoff=0.001, max_backoff=0.01) if sc.retries else None
    plan = _plan(sc, sc.jobs, rng)
    offsets = _arrivals(sc, sc.jobs, rng)
    n = len(plan)
    intended = [0.0] * n
    submitted = [0.0] * n
    done_at = [0.0] * n
    jobs: list[pools.Job | None] = [None] * n
    job: pools.Job[Any] | None
    finished = threading.Semaphore(0)  # released once per job, by its done-callback
    rejected = 0

    with pool:
        for name, params, _ in plan[:WARMUP_JOBS]:  # one at a time: fits even queue_size=0 + reject
            pool.submit(fn, name, params).exception()
        cpu0, _ = _cpu_and_rss()
        gen_cpu0 = time.thread_time()
        t0 = time.monotonic()
        sampler = Sampler(pool, t0).start()
        try:
            for i, (name, params, prio) in enumerate(plan):
                if offsets is not None:
                    intended[i] = t0 + offsets[i]
                    delay = intended[i] - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                now = time.monotonic()
                submitted[i] = now
                if offsets is None:
                    intended[i] = now
                try:
                    job = pool.submit(fn, name, params, priority=prio, timeout=sc.timeout, retry=retry, wait=sc.wait)
                except pools.QueueFull:
                    rejected += 1
                    continue
                job.add_done_callback(functools.partial(_record_done, done_at, finished, i))
                jobs[i] = job
            last_submit = time.monotonic()
            gen_cpu = time.thread_time() - gen_cpu0
            # Wait for the done-callbacks, not the futures: a future wakes its waiters
            # before it runs its callbacks, and done_at[i] is written by the callback.
            for _ in range(n - rejected):
                finished.acquire()
        finally:
            sampler.stop()
        t_end = max([d for d in done_at if d] or [last_submit])
        cpu1, workers_rss = _cpu_and_rss()
        stats = pool.stats()

    measured = [j for j in jobs if j is not None]
    counts = {
        state: sum(j.status == state for j in measured) for state in ("succeeded", "failed", "timed_out", "cancelled")
    }
    latencies, waits, dispatch, runs, returns = [], [], [], [], []
    wait_by_prio: dict[int, list[float]] = {}
    for i, job in enumerate(jobs):
        if job is None or job.status != "succeeded":
            continue
        start, end = job.result()
        latencies.append(done_at[i] - intended[i])
        waits.append(job.started_at - job.enqueued_at)
        dispatch.append(max(0.0, start - job.started_at))
        runs.append(end - start)
        returns.append(max(0.0, done_at[i] - end))
        wait_by_prio.setdefault(plan[i][2], []).append(job.started_at - job.enqueued_at)
    wall = max(1e-9, t_end - t0)
    span = max(1e-9, last_submit - t0)
    offered = sc.rate()
    achieved = (n - 1) / span if offered and n > 1 else None  # n arrivals span n - 1 gaps
    # how far the last submission fell behind the schedule, as a share of the schedule
    behind = (last_submit - intended[-1]) / max(1e-9, offsets[-1]) if offsets and n > 1 and offsets[-1] else None
    gen_util = gen_cpu / span
    ms = lambda v: None if v is None else v * 1000  # noqa: E731
    extra: dict[str, Any] = {"timeline": sampler.timeline()}
    if len(sc.priorities) > 1:
        extra["queue_wait_ms_by_priority"] = {
            str(p): {"p50": ms(percentile(v, 0.5)), "p99": ms(percentile(v, 0.99)), "n": len(v)}
            for p, v in sorted(wait_by_prio.items())
        }
    return {
        "jobs": n,
        "completed": counts["succeeded"],
        "failed": counts["failed"],
        "timed_out": counts["timed_out"],
        "cancelled": counts["cancelled"],
        "rejected": rejected,
        "retried": stats.retried,
        "wall_s": wall,
        "throughput": counts["succeeded"] / wall,
        "lat_p50_ms": ms(percentile(latencies, 0.50)),
        "lat_p95_ms": ms(percentile(latencies, 0.95)),
        "lat_p99_ms": ms(percentile(latencies, 0.99)),
        "lat_max_ms": ms(max(latencies) if latencies else None),
        "queue_wait_ms": ms(mean(waits)),
        "dispatch_ms": ms(mean(dispatch)),
        "run_ms": ms(mean(runs)),
        "return_ms": ms(mean(returns)),
        "cpu_s": cpu1 - cpu0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + workers_rss,
        "offered_rate": offered,
        "achieved_rate": achieved,
        "generator_cpu": gen_util,
        # The load generator, not the pool, limits the run when it kept a core busy
        # or could not submit at the offered rate.
        # (with overflow="block" a slow generator is the pool's back-pressure, not a limit)
        # It lagged its own schedule (the random Poisson draw, not the nominal rate) by 5%.
        "generator_bound": bool(gen_util > 0.9 or (behind is not None and behind > 0.05 and sc.overflow == "reject")),
        "extra": extra,
    }


def control_workload() -> float:
    """A fixed pure-Python loop: its time tracks this machine's speed right now."""
    start = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i * i % 7
    return time.perf_counter() - start


def measure(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("control"):
        return {"control_s": control_workload()}
    case = Case.from_json(request["case"])
    backend = request["backend"]
    seed = request.get("seed", 0)
    driver = case.scenario.driver
    if driver:
        from . import experiments

        return getattr(experiments, driver)(case, backend, seed)
    return run_load(case, backend, seed)


def main() -> int:
    request = json.loads(sys.stdin.read())
    result = measure(request)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # Run through the module's real name, so that the process backend pickles
    # scenarios.measure.timed, which its workers can import, not __main__.timed.
    from scenarios import measure as _real

    sys.exit(_real.main())
