"""``poolbench contenders``: each backend beside what a Python user would pick instead, in one run.

    poolbench contenders [--repeats 5] [--jobs 20000] [--cases noop map ...] [--json PATH]

Every measurement runs in a fresh interpreter (``python -m scenarios.contenders --one
CASE IMPL``), repeats are interleaved across implementations (rotated each repeat, so
that drift hits all alike), and each poolbench figure is printed as a ratio to its
contender with the per-repeat range and a Mann-Whitney verdict (scenarios.stats), and
checked against its target. Absolute figures drift on a shared
machine; ratios from one run do not.

Our side runs as the targets are meant: with priorities, stats and timeouts
armed — every job is submitted with ``priority=`` (alternating 0 and 1; ``map`` takes
one priority for all) and ``timeout=60`` (never reached), and the pool keeps its stats
as always. The contenders run as their users would write them.

Cases (jobs N = ``--jobs``):

- noop:    no-op jobs, 2 workers, submit all then wait (jobs/s; N, N/4 for processes)
- sleep1:  1 ms sleeps, 8 workers (jobs/s, and the ideal 8 / measured sleep)
- latency: one job alone, submit to result (µs, lower is better)
- cpu1ms:  ~1 ms of pure-Python CPU per job, 2 workers: the process backend beside
           ProcessPoolExecutor and mpire's ``WorkerPool.map``, and the 2-core
           ideal 2 / (one job's measured CPU time) (jobs/s)
- map:     ``map`` of a no-op over N/4 items, 2 workers: the process backend's
           ``pool.map`` beside mpire's map and ``ProcessPoolExecutor.map`` (jobs/s)
- memory:  extra RSS of ``--waiting`` (100k) jobs waiting behind 1 busy worker, scaled to
           MB per 100k (lower is better; the target is < 100 MB), and the
           allocation per job from tracemalloc with its top source lines
- scaling: µs per no-op job as jobs grow (thread, 2 workers: N/2, 5N, 50N — 10k to 1M;
           queue_size up to 100k) and as workers grow (thread 1-64 on N jobs, process
           1-16 on N/4); "flat" means the last point is within 1.5x of the first

Every side is prepared alike, ours and the contenders': started, warmed and alive
before the clock starts, so that a figure times the jobs, not start-up (the run
prints how each side was prepared). mpire's ``WorkerPool`` is made with
``keep_alive=True`` and warmed by a first ``map``: with its default
``keep_alive=False`` it forks its workers again inside every ``map``, and a warm-up
would warm nothing that is timed. Without mpire installed (``pip install mpire``, or
the ``bench`` extra) its contenders are skipped, and the run says so.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import time

TIMEOUT = 60.0  # seconds: armed on every job of ours, never reached
FLAT = 1.5  # scaling: "flat" when the last point costs at most this many times the first
MEMORY_TARGET_MB = 100.0  # per 100k waiting jobs
CASE_NAMES = ("noop", "sleep1", "latency", "cpu1ms", "map", "memory", "scaling")
UNITS = {
    "noop": "jobs/s",
    "sleep1": "jobs/s",
    "latency": "µs",
    "cpu1ms": "jobs/s",
    "map": "jobs/s",
    "memory": "MB/100k",
    "scaling": "µs/job",
}


# ------------------------------------------------------------------ job functions


def noop():
    return None


def noop1(x):
    return x


async def anoop():
    return None


def sleep1():
    time.sleep(0.001)


async def asleep1():
    import asyncio

    await asyncio.sleep(0.001)


def spin(iters: int) -> int:
    """Pure-Python CPU work: about 1 ms with the iteration count from calibrate_spin()."""
    x = 0
    for i in range(iters):
        x ^= i * i
    return x


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def calibrate_spin(target: float = 0.001) -> int:
    """Iterations of spin() that take ``target`` seconds here (the least disturbed of 20)."""
    n = 20000
    spin(n)
    best = math.inf
    for _ in range(20):
        t = time.perf_counter()
        spin(n)
        best = min(best, time.perf_counter() - t)
    return max(1, round(n * target / best))


# ------------------------------------------------------------------ throughput


def _check(jobs) -> None:
    bad = [j for j in jobs if j.exception() is not None]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs failed, e.g. {bad[0].exception()!r}")


def _warm_all(submit, workers: int, fn=None) -> None:
    """Before the clock starts, every worker runs a job at the same time (a latch
    they all reach) that carries ``fn``: so each one is up and has imported the
    module of the measured function, and start-up is not timed, on either side."""
    from pools.testing.jobs import Gate, Latch, hold

    with Gate() as gate, Latch() as latch:
        held = [submit(hold, gate, latch, fn) for _ in range(workers)]
        if not latch.wait(workers, 120):
            raise RuntimeError(f"{workers} workers did not all start within 120 s")
        gate.open()
        for f in held:
            f.result()


class _AsyncResult:
    def __init__(self, r) -> None:
        self._r = r

    def result(self):
        return self._r.get()


def _pb(backend: str, fn, n: int, workers: int, args: tuple = ()) -> float:
    import concurrent.futures

    import pools

    with pools.create_pool(backend, workers=workers, queue_size=n) as pool:
        pool.submit(fn, *args).result()
        _warm_all(pool.submit, workers, fn)
        t = time.perf_counter()
        done, _ = concurrent.futures.wait([pool.submit(fn, *args, priority=i & 1, timeout=TIMEOUT) for i in range(n)])
        rate = n / (time.perf_counter() - t)
        _check(done)
        return rate


def _pb_async_own_loop(fn, n: int, workers: int) -> float:
    import asyncio

    import pools

    async def main():
        async with pools.create_pool("asyncio", workers=workers, queue_size=n) as pool:
            await pool.submit(fn)
            t = time.perf_counter()
            await asyncio.gather(*(pool.submit(fn, priority=i & 1, timeout=TIMEOUT) for i in range(n)))
            return n / (time.perf_counter() - t)

    return asyncio.run(main())


def _tpe(fn, n: int, workers: int) -> float:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        ex.submit(fn).result()
        _warm_all(ex.submit, workers, fn)
        t = time.perf_counter()
        concurrent.futures.wait([ex.submit(fn) for _ in range(n)])
        return n / (time.perf_counter() - t)


def _ppe(fn, n: int, workers: int, args: tuple = ()) -> float:
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(workers) as ex:
        ex.submit(fn, *args).result()
        _warm_all(ex.submit, workers, fn)
        t = time.perf_counter()
        done, _ = concurrent.futures.wait([ex.submit(fn, *args) for _ in range(n)])
        rate = n / (time.perf_counter() - t)
        _check(done)
        return rate


def _mp_apply_async(fn, n: int, workers: int) -> float:
    import multiprocessing

    with multiprocessing.Pool(workers) as mp:
        mp.apply_async(fn).get()
        _warm_all(lambda f, *a: _AsyncResult(mp.apply_async(f, a)), workers, fn)
        t = time.perf_counter()
        for r in [mp.apply_async(fn) for _ in range(n)]:
            r.get()
        return n / (time.perf_counter() - t)


def _gather_semaphore(fn, n: int, workers: int) -> float:
    import asyncio

    async def main():
        sem = asyncio.Semaphore(workers)

        async def one():
            async with sem:
                return await fn()

        await one()  # warm, as our pool is warmed by its first job
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t)

    return asyncio.run(main())


def _taskgroup_consumers(fn, n: int, workers: int) -> float:
    """The canonical asyncio worker pool: W consumer tasks on an asyncio.Queue, the
    producer puts the jobs and joins the queue; each job's result goes to a future."""
    import asyncio

    async def main():
        q: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def consumer():
            while True:
                f, out = await q.get()
                out.set_result(await f())
                q.task_done()

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(consumer()) for _ in range(workers)]
            warm = loop.create_future()  # started and warmed before the clock, as our pool is
            await q.put((fn, warm))
            await warm
            t = time.perf_counter()
            results = []
            for _ in range(n):
                out = loop.create_future()
                results.append(out)
                await q.put((fn, out))
            await q.join()
            await asyncio.gather(*results)
            rate = n / (time.perf_counter() - t)
            for task in tasks:
                task.cancel()
        return rate

    return asyncio.run(main())


def _measured_sleep() -> float:
    t = time.perf_counter()
    for _ in range(200):
        time.sleep(0.001)
    return (time.perf_counter() - t) / 200


# ------------------------------------------------------------------ latency


def _latency(submit_and_wait, rounds: int) -> float:
    submit_and_wait()
    t = time.perf_counter()
    for _ in range(rounds):
        submit_and_wait()
    return (time.perf_counter() - t) / rounds * 1e6  # µs


def _lat_pb(backend: str, rounds: int) -> float:
    import pools

    with pools.create_pool(backend, workers=1) as pool:
        return _latency(lambda: pool.submit(noop, priority=1, timeout=TIMEOUT).result(), rounds)


def _lat_tpe(rounds: int) -> float:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return _latency(lambda: ex.submit(noop).result(), rounds)


def _lat_mp(rounds: int) -> float:
    import multiprocessing

    with multiprocessing.Pool(1) as mp:
        return _latency(lambda: mp.apply_async(noop).get(), rounds)


# ------------------------------------------------------------------ cpu1ms and map


def _ideal_cpu(iters: int, workers: int = 2, rounds: int = 200) -> tuple[float, dict]:
    """The ``workers``-core ideal: workers / (CPU seconds of one job, run alone)."""
    spin(iters)
    t = time.process_time()
    for _ in range(rounds):
        spin(iters)
    per = (time.process_time() - t) / rounds
    return workers / per, {"job_ms": per * 1e3}


def _have_mpire() -> bool:
    import importlib.util

    return importlib.util.find_spec("mpire") is not None


def _mpire_map(fn, items: list, workers: int) -> float:
    from mpire import WorkerPool

    # keep_alive: the workers of the warm-up map serve the timed one (by default
    # mpire forks them again in every map, and the warm-up would warm nothing)
    with WorkerPool(n_jobs=workers, keep_alive=True) as pool:
        pool.map(fn, items[:workers], chunk_size=1)  # every worker started, fn run
        t = time.perf_counter()
        out = pool.map(fn, items)
        rate = len(items) / (time.perf_counter() - t)
    if len(out) != len(items):
        raise RuntimeError(f"mpire returned {len(out)} results for {len(items)} items")
    return rate


def _pb_map(fn, items: list, workers: int) -> float:
    import pools

    with pools.create_pool("process", workers=workers) as pool:
        list(pool.map(fn, items[:workers]))
        _warm_all(pool.submit, workers, fn)
        t = time.perf_counter()
        out = list(pool.map(fn, items, priority=1, timeout=TIMEOUT))
        rate = len(items) / (time.perf_counter() - t)
    if len(out) != len(items):
        raise RuntimeError(f"pool.map returned {len(out)} results for {len(items)} items")
    return rate


def _ppe_map(fn, items: list, workers: int) -> float:
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(workers) as ex:
        list(ex.map(fn, items[:workers]))
        _warm_all(ex.submit, workers, fn)
        t = time.perf_counter()
        out = list(ex.map(fn, items))
        return len(out) / (time.perf_counter() - t)


# ------------------------------------------------------------------ memory


def _rss() -> int:
    """RSS of this process and all its children (worker processes), in bytes."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def _blocked(impl: str, n: int):
    """A pool or executor with 1 worker held busy and room for ``n`` waiting jobs:
    returns (submit(i), close())."""
    import concurrent.futures
    import threading

    import pools
    from pools.testing.jobs import Gate, Latch, ahold, hold

    if impl in ("thread", "process", "asyncio"):
        gate, latch = Gate(), Latch()
        pool = pools.create_pool(impl, workers=1, queue_size=n)
        fn = anoop if impl == "asyncio" else noop
        pool.submit(ahold if impl == "asyncio" else hold, gate, latch)
        if not latch.wait(1, timeout=60):
            raise RuntimeError("the gate job never started")

        def submit(i):
            pool.submit(fn, priority=i & 1, timeout=TIMEOUT)

        def close():
            gate.open()
            pool.shutdown(cancel_pending=True)
            gate.close()
            latch.close()

        return submit, close
    if impl == "ThreadPoolExecutor":
        ex: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(1)
        started, release = threading.Event(), threading.Event()

        def occupy():
            started.set()
            release.wait()

        ex.submit(occupy)
        started.wait()

        def close():
            release.set()
            ex.shutdown(cancel_futures=True)

        return (lambda i: ex.submit(noop)), close
    if impl == "ProcessPoolExecutor":
        gate, latch = Gate(), Latch()
        ex = concurrent.futures.ProcessPoolExecutor(1)
        ex.submit(hold, gate, latch)
        if not latch.wait(1, timeout=60):
            raise RuntimeError("the gate job never started")

        def close():
            gate.open()
            ex.shutdown(cancel_futures=True)
            gate.close()
            latch.close()

        return (lambda i: ex.submit(noop)), close
    raise KeyError(impl)


def _short(path: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if path.startswith(root + os.sep):
        return os.path.relpath(path, root)
    parts = path.split(os.sep)
    return os.sep.join(parts[-2:])


def _memory(impl: str, n: int, traced: int = 20_000) -> tuple[float, dict]:
    """Extra RSS of ``n`` waiting jobs, in MB per 100k; then, on a fresh pool, the
    tracemalloc allocation per job over ``min(n, traced)`` submissions."""
    import gc
    import linecache
    import tracemalloc

    submit, close = _blocked(impl, n)
    try:
        gc.collect()
        before = _rss()
        for i in range(n):
            submit(i)
        gc.collect()
        extra = _rss() - before
    finally:
        close()

    m = min(n, traced)
    submit, close = _blocked(impl, m)
    try:
        gc.collect()
        tracemalloc.start()
        first = tracemalloc.take_snapshot()
        for i in range(m):
            submit(i)
        second = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        close()
    skip = (tracemalloc.Filter(False, tracemalloc.__file__),)
    diff = second.filter_traces(skip).compare_to(first.filter_traces(skip), "lineno")
    per_job = sum(d.size_diff for d in diff) / m
    top = [
        [f"{_short(f.filename)}:{f.lineno}", d.size_diff / m, linecache.getline(f.filename, f.lineno).strip()[:60]]
        for d in sorted(diff, key=lambda d: -d.size_diff)[:6]
        if d.size_diff > 0
        for f in [d.traceback[0]]
    ]
    return extra / n * 100_000 / 1e6, {
        "waiting": n,
        "extra_rss_mb": extra / 1e6,
        "bytes_per_job": per_job,
        "traced": m,
        "top": top,
    }


# ------------------------------------------------------------------ scaling


def _per_job_us(backend: str, n: int, workers: int, queue_size: int) -> tuple[float, dict]:
    """µs per no-op job: submit n (blocking when the queue is full, keeping no
    reference), until the last one is done. Every worker is up before the clock starts.
    Also the measuring process's peak RSS (the pool's memory as jobs grow)."""
    import concurrent.futures
    import itertools
    import resource
    import threading

    import pools

    with pools.create_pool(backend, workers=workers, queue_size=queue_size) as pool:
        concurrent.futures.wait([pool.submit(_pause, 0.05) for _ in range(workers)])
        done, count = threading.Event(), itertools.count(1)

        def finished(_job) -> None:
            if next(count) == n:
                done.set()

        t = time.perf_counter()
        for i in range(n):
            pool.submit(noop, priority=i & 1, timeout=TIMEOUT).add_done_callback(finished)
        done.wait()
        dt = time.perf_counter() - t
        failed = pool.stats().failed
    if failed:
        raise RuntimeError(f"{failed} jobs failed")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KB on Linux
    return dt / n * 1e6, {"peak_rss_mb": peak}


def _si(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def scaling_series(jobs: int) -> list[tuple[str, list[tuple[str, str, int, int, int]]]]:
    """[(title, [(label, impl, n, workers, queue_size), ...]), ...]"""
    jobs_points = [max(1, jobs // 2), jobs * 5, jobs * 50]
    nproc = max(1, jobs // 4)
    return [
        (
            "thread, 2 workers, by jobs (queue_size up to 100k)",
            [(_si(n), f"thread jobs={_si(n)}", n, 2, min(n, 100_000)) for n in jobs_points],
        ),
        (
            f"thread, {_si(jobs)} jobs, by workers",
            [(str(w), f"thread workers={w}", jobs, w, jobs) for w in (1, 4, 16, 64)],
        ),
        (
            f"process, {_si(nproc)} jobs, by workers",
            [(str(w), f"process workers={w}", nproc, w, nproc) for w in (1, 4, 16)],
        ),
    ]


# ------------------------------------------------------------------ the table


# How each implementation is prepared before its clock starts: printed with the
# results, so that a reader can check that both sides of a ratio started alike.
WARMED = (
    "started; one job, then one job on every worker at once (each up, the function's module "
    "imported); alive before the clock"
)
MAP_WARMED = "started; a first map of one item per worker, then one job on every worker at once; alive before the clock"
PREPARED = {
    "pool": WARMED,
    "own loop": "started on the measuring loop, one job run before the clock; its consumer tasks are made as jobs come",
    "gather": "the Semaphore made and one job run through it before the clock; a task per job, made inside the timing",
    "taskgroup": "its consumer tasks started and one job run through their queue before the clock",
    "mpire": (
        "WorkerPool(keep_alive=True): started by a first map, one item per worker (each ran the function); "
        "alive before the clock"
    ),
    "map": MAP_WARMED,
    "latency": "started by one untimed round trip; then timed round trips, one job at a time",
    "ideal": "no pool: computed from the job alone, measured in this process",
    "memory": "started, its one worker held by a job before the baseline RSS is read",
    "scaling": "started; every worker ran a 50 ms job before the clock",
}


def implementations(jobs: int, waiting: int = 100_000, cpu_iters: int = 1) -> dict[str, dict[str, tuple]]:
    """case -> impl -> (callable, higher_is_better, how it is prepared); a callable
    returns a value or (value, extra dict). Built lazily: nothing runs until called."""
    n, nsleep, nproc = jobs, max(200, jobs // 20), max(1, jobs // 4)
    ncpu, rounds = max(100, jobs // 20), max(200, jobs // 10)
    mpire = _have_mpire()
    warmed, latency, ideal = PREPARED["pool"], PREPARED["latency"], PREPARED["ideal"]
    table: dict[str, dict[str, tuple]] = {
        "noop": {
            "thread": (lambda: _pb("thread", noop, n, 2), True, warmed),
            "ThreadPoolExecutor": (lambda: _tpe(noop, n, 2), True, warmed),
            "process": (lambda: _pb("process", noop, nproc, 2), True, warmed),
            "ProcessPoolExecutor": (lambda: _ppe(noop, nproc, 2), True, warmed),
            "mp.Pool.apply_async": (lambda: _mp_apply_async(noop, nproc, 2), True, warmed),
            "asyncio (own loop)": (lambda: _pb_async_own_loop(anoop, n, 2), True, PREPARED["own loop"]),
            "gather+Semaphore": (lambda: _gather_semaphore(anoop, n, 2), True, PREPARED["gather"]),
            "TaskGroup consumers": (lambda: _taskgroup_consumers(anoop, n, 2), True, PREPARED["taskgroup"]),
        },
        "sleep1": {
            "thread": (lambda: _pb("thread", sleep1, nsleep, 8), True, warmed),
            "ThreadPoolExecutor": (lambda: _tpe(sleep1, nsleep, 8), True, warmed),
            "process": (lambda: _pb("process", sleep1, nsleep, 8), True, warmed),
            "ProcessPoolExecutor": (lambda: _ppe(sleep1, nsleep, 8), True, warmed),
            "ideal (8 / measured sleep)": (lambda: 8 / _measured_sleep(), True, ideal),
        },
        "latency": {
            "thread": (lambda: _lat_pb("thread", rounds), False, latency),
            "ThreadPoolExecutor": (lambda: _lat_tpe(rounds), False, latency),
            "process": (lambda: _lat_pb("process", rounds), False, latency),
            "mp.Pool.apply_async": (lambda: _lat_mp(rounds), False, latency),
        },
        "cpu1ms": {
            "process": (lambda: _pb("process", spin, ncpu, 2, (cpu_iters,)), True, warmed),
            "ProcessPoolExecutor": (lambda: _ppe(spin, ncpu, 2, (cpu_iters,)), True, warmed),
            "mpire map": (lambda: _mpire_map(spin, [cpu_iters] * ncpu, 2), True, PREPARED["mpire"]),
            "ideal (2 / measured job)": (lambda: _ideal_cpu(cpu_iters, 2), True, ideal),
        },
        "map": {
            "process map": (lambda: _pb_map(noop1, list(range(nproc)), 2), True, PREPARED["map"]),
            "mpire map": (lambda: _mpire_map(noop1, list(range(nproc)), 2), True, PREPARED["mpire"]),
            "ProcessPoolExecutor.map": (lambda: _ppe_map(noop1, list(range(nproc)), 2), True, PREPARED["map"]),
        },
        "memory": {
            impl: ((lambda impl=impl: _memory(impl, waiting)), False, PREPARED["memory"])
            for impl in ("thread", "ThreadPoolExecutor", "process", "ProcessPoolExecutor", "asyncio")
        },
        "scaling": {
            impl: (functools.partial(_per_job_us, impl.split()[0], n, w, q), False, PREPARED["scaling"])
            for _, points in scaling_series(jobs)
            for _, impl, n, w, q in points
        },
    }
    if not mpire:
        for case in ("cpu1ms", "map"):
            del table[case]["mpire map"]
    return table


PAIRS = [  # (case, ours, theirs, the target ratio or None); ratios are "higher is better"
    ("noop", "thread", "ThreadPoolExecutor", 2.0),
    ("noop", "process", "ProcessPoolExecutor", 3.0),
    ("noop", "process", "mp.Pool.apply_async", None),
    ("noop", "asyncio (own loop)", "gather+Semaphore", 1.0),
    ("noop", "asyncio (own loop)", "TaskGroup consumers", 0.6),
    ("sleep1", "thread", "ideal (8 / measured sleep)", 0.97),
    ("sleep1", "ThreadPoolExecutor", "ideal (8 / measured sleep)", None),
    ("sleep1", "process", "ideal (8 / measured sleep)", 0.95),
    ("latency", "thread", "ThreadPoolExecutor", 1 / 1.5),
    ("latency", "process", "mp.Pool.apply_async", 1 / 1.5),
    ("cpu1ms", "process", "ideal (2 / measured job)", 0.90),
    ("cpu1ms", "process", "mpire map", 1.0),
    ("cpu1ms", "process", "ProcessPoolExecutor", None),
    ("map", "process map", "mpire map", 1.0),
    ("map", "process map", "ProcessPoolExecutor.map", None),
    ("memory", "thread", "ThreadPoolExecutor", None),
    ("memory", "process", "ProcessPoolExecutor", None),
]


# ------------------------------------------------------------------ one measurement


def measure_one(case: str, impl: str, jobs: int, waiting: int, cpu_iters: int) -> dict:
    out = implementations(jobs, waiting, cpu_iters)[case][impl][0]()
    value, extra = out if isinstance(out, tuple) else (out, {})
    return {"value": float(value), "extra": extra}


def _one_in_subprocess(case: str, impl: str, jobs: int, waiting: int, cpu_iters: int) -> tuple[dict | None, str]:
    cmd = [
        sys.executable,
        "-m",
        "scenarios.contenders",
        "--one",
        case,
        impl,
        "--jobs",
        str(jobs),
        "--waiting",
        str(waiting),
        "--cpu-iters",
        str(cpu_iters),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return None, "timed out after 900 s"
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        return None, tail[0]
    try:
        return json.loads(out.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, f"no result in its output: {out.stdout[-200:]!r}"


# ------------------------------------------------------------------ the run


def run(
    *,
    repeats: int = 5,
    jobs: int = 20000,
    cases: tuple[str, ...] = CASE_NAMES,
    waiting: int = 100_000,
    json_path: str | None = None,
) -> int:
    from .stats import compare, median_ci

    if repeats < 1 or jobs < 1 or waiting < 1:
        print("--repeats, --jobs and --waiting must be at least 1", file=sys.stderr)
        return 2
    cases = tuple(c for c in CASE_NAMES if c in cases)
    cpu_iters = calibrate_spin() if "cpu1ms" in cases else 1
    table = implementations(jobs, waiting, cpu_iters)
    notes = []
    if not _have_mpire() and {"cpu1ms", "map"} & set(cases):
        notes.append("mpire is not installed: its contenders are skipped (pip install mpire, or the bench extra)")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    values: dict[tuple[str, str], list[float]] = {}
    extras: dict[tuple[str, str], list[dict]] = {}
    failures: list[dict] = []
    t0 = time.monotonic()
    for rep in range(repeats):
        for case in cases:
            names = list(table[case])
            shift = rep % len(names)
            for impl in names[shift:] + names[:shift]:  # rotated: drift hits every impl alike
                result, err = _one_in_subprocess(case, impl, jobs, waiting, cpu_iters)
                if result is None:
                    print(f"{case}/{impl} failed: {err}", file=sys.stderr)
                    failures.append({"case": case, "impl": impl, "repeat": rep, "error": err})
                    continue
                values.setdefault((case, impl), []).append(result["value"])
                extras.setdefault((case, impl), []).append(result["extra"])
        print(f"repeat {rep + 1}/{repeats} done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)

    print(
        f"\nmedians of {repeats} interleaved repeats, each in a fresh process; ours with priorities, "
        f"stats and timeouts armed (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    for note in notes:
        print(f"note: {note}")
    for case in cases:
        if case == "scaling":
            continue
        for impl in table[case]:
            vals = values.get((case, impl))
            if not vals:
                print(f"  {case:<8} {impl:<28} {'failed':>12}")
                continue
            est = median_ci(vals)
            print(f"  {case:<8} {impl:<28} {est.median:>12,.1f} {UNITS[case]}  [{est.low:,.1f}, {est.high:,.1f}]")
    if "cpu1ms" in cases:
        found = (e.get("job_ms") for e in extras.get(("cpu1ms", "ideal (2 / measured job)"), []))
        ms = [m for m in found if m is not None]
        if ms:
            print(f"  cpu1ms job: {cpu_iters:,} iterations, {median_ci(ms).median:.3f} ms of CPU measured alone")
    print("\nhow each side was prepared before its clock started")
    for case in cases:
        for impl, (_, _, prepared) in table[case].items():
            print(f"  {case:<8} {impl:<28} {prepared}")

    ratios = []
    printed_header = False
    for case, ours, theirs, target in PAIRS:
        a, b = values.get((case, ours)), values.get((case, theirs))
        if case not in cases or not a or not b:
            continue
        if not printed_header:
            print("\nratios (ours / theirs; latency and memory: theirs / ours, so higher is better everywhere)")
            printed_header = True
        higher = table[case][ours][1]
        c = compare(a, b, higher_is_better=higher)
        ratio = c.ratio if higher else (1 / c.ratio if c.ratio else math.inf)
        per = sorted(
            (x / y if higher else y / x) if (y if higher else x) else math.inf for x, y in zip(a, b, strict=False)
        )
        met = None if target is None else ratio >= target
        goal = "" if target is None else f"  target >= {target:.2f}: {'met' if met else 'NOT met'}"
        of_ideal = f" (= {ratio:.0%} of the ideal)" if theirs.startswith("ideal") else ""
        verdict = c.verdict
        if case == "memory":
            verdict = {"faster": "smaller", "slower": "larger"}.get(verdict, verdict)
        print(
            f"  {case:<8} {ours} vs {theirs}: {ratio:.2f}x{of_ideal} (per-repeat {per[0]:.2f}-{per[-1]:.2f}; "
            f"{verdict}, p={c.p_value:.3f}){goal}"
        )
        ratios.append(
            {
                "case": case,
                "ours": ours,
                "theirs": theirs,
                "ratio": ratio,
                "per_repeat": per,
                "verdict": verdict,
                "p_value": c.p_value,
                "target": target,
                "met": met,
            }
        )

    memory = _print_memory(cases, table, values, extras, waiting) if "memory" in cases else []
    scaling = _print_scaling(cases, jobs, values, extras) if "scaling" in cases else []

    if failures:
        print(
            f"\n{len(failures)} measurement(s) failed: "
            + "; ".join(f"{f['case']}/{f['impl']}: {f['error']}" for f in failures[:5])
        )
    print(f"\ntook {time.monotonic() - t0:.0f} s")
    if json_path:
        doc = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "repeats": repeats,
            "jobs": jobs,
            "waiting": waiting,
            "cpu_iters": cpu_iters,
            "cases": list(cases),
            "notes": notes,
            "prepared": {case: {impl: entry[2] for impl, entry in table[case].items()} for case in cases},
            "values": {
                case: {impl: values[(case, impl)] for impl in table[case] if (case, impl) in values} for case in cases
            },
            "extras": {
                case: {impl: extras[(case, impl)] for impl in table[case] if (case, impl) in extras} for case in cases
            },
            "ratios": ratios,
            "memory": memory,
            "scaling": scaling,
            "failures": failures,
        }
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"results: {json_path}")
    return 1 if failures else 0


def _print_memory(cases, table, values, extras, waiting) -> list[dict]:
    import statistics

    from .stats import median_ci

    print(
        f"\nmemory: extra RSS of {waiting:,} jobs waiting behind 1 busy worker (this process and its "
        f"workers), per 100k; allocation per job from tracemalloc"
    )
    rows = []
    for impl in table["memory"]:
        vals = values.get(("memory", impl))
        if not vals:
            continue
        est = median_ci(vals)
        ex = extras[("memory", impl)]
        per_job = statistics.median(e["bytes_per_job"] for e in ex)
        ours = impl in ("thread", "process", "asyncio")
        met = est.median < MEMORY_TARGET_MB if ours else None
        goal = f"  target < {MEMORY_TARGET_MB:.0f} MB: {'met' if met else 'NOT met'}" if ours else ""
        print(
            f"  {impl:<20} {est.median:8.1f} MB per 100k [{est.low:.1f}, {est.high:.1f}]  "
            f"tracemalloc {per_job:7,.0f} B/job{goal}"
        )
        top = ex[-1].get("top", [])
        if ours:
            for where, b, text in top[:5]:
                print(f"      {b:7,.0f} B/job  {where:<26} {text}")
        rows.append({"impl": impl, "mb_per_100k": est.median, "bytes_per_job": per_job, "target_met": met, "top": top})
    return rows


def _print_scaling(cases, jobs, values, extras) -> list[dict]:
    import statistics

    print(
        f"\nscaling: µs per no-op job (median of the repeats) and the measuring process's peak RSS; ours "
        f"with priorities and timeouts armed; flat = the last point within {FLAT}x of the first"
    )
    rows = []
    for title, points in scaling_series(jobs):
        cells, meds, peaks = [], [], []
        for label, impl, *_ in points:
            vals = values.get(("scaling", impl))
            med = statistics.median(vals) if vals else None
            peak = max((e.get("peak_rss_mb", 0) for e in extras.get(("scaling", impl), [])), default=None)
            meds.append(med)
            peaks.append(peak)
            cells.append(f"{label:>4}: {med:6.1f} µs ({peak:,.0f} MB)" if med is not None else f"{label:>4}: failed")
        growth = meds[-1] / meds[0] if meds[0] and meds[-1] else None
        verdict = (
            ""
            if growth is None
            else (f": growth {growth:.2f}x, target <= {FLAT}x (flat): {'met' if growth <= FLAT else 'NOT met'}")
        )
        print(f"  {title}{verdict}")
        print("      " + " | ".join(cells))
        rows.append(
            {
                "series": title,
                "points": [[p[0], m, r] for p, m, r in zip(points, meds, peaks, strict=False)],
                "growth": growth,
                "flat": None if growth is None else growth <= FLAT,
            }
        )
    return rows


# ------------------------------------------------------------------ python -m scenarios.contenders --one


def main(argv: list[str] | None = None) -> int:
    """One measurement, in the fresh interpreter that :func:`run` starts for it."""
    parser = argparse.ArgumentParser(
        prog="python -m scenarios.contenders",
        description="One measurement of 'poolbench contenders', which runs the whole comparison.",
    )
    parser.add_argument("--one", nargs=2, metavar=("CASE", "IMPL"), required=True, help="the case and implementation")
    parser.add_argument("--jobs", type=int, default=20000, metavar="N")
    parser.add_argument("--waiting", type=int, default=100_000, metavar="N")
    parser.add_argument("--cpu-iters", type=int, default=None)
    args = parser.parse_args(argv)
    case, impl = args.one
    iters = args.cpu_iters or calibrate_spin()
    print(json.dumps(measure_one(case, impl, args.jobs, args.waiting, iters)))
    return 0


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy: the process backends pickle
    # the job functions by module name, and workers can import scenarios.contenders.
    from scenarios.contenders import main as _main

    sys.exit(_main())
