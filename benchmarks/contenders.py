"""Each poolbench backend beside what a Python user would pick instead, in one run.

    python benchmarks/contenders.py [--repeats 5] [--jobs 20000]

Every measurement runs in a fresh interpreter (``--one CASE IMPL``), repeats are
interleaved across implementations (so that drift hits all alike), and each
poolbench figure is printed as a ratio to its stdlib contender with a 95%
confidence interval and a Mann-Whitney verdict (scenarios.stats). The issue's
targets are ratios; absolute figures drift on a shared machine, ratios in one run
do not. Cases:

- noop:    no-op jobs, 2 workers, submit all then wait (jobs/s)
- sleep1:  1 ms sleeps, 8 workers (jobs/s, and % of the ideal 8 / measured sleep)
- latency: one job alone, submit to result (µs, lower is better)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys
import time

import pools


def noop():
    return None


async def anoop():
    return None


def sleep1():
    time.sleep(0.001)


async def asleep1():
    await asyncio.sleep(0.001)


# ----------------------------------------------------------------- implementations


def _pb(backend: str, fn, n: int, workers: int) -> float:
    with pools.create_pool(backend, workers=workers, queue_size=n) as pool:
        pool.submit(fn).result()
        t = time.perf_counter()
        concurrent.futures.wait([pool.submit(fn) for _ in range(n)])
        return n / (time.perf_counter() - t)


def _pb_async_own_loop(fn, n: int, workers: int) -> float:
    async def main():
        async with pools.create_pool("asyncio", workers=workers, queue_size=n) as pool:
            await pool.submit(fn)
            t = time.perf_counter()
            await asyncio.gather(*(pool.submit(fn) for _ in range(n)))
            return n / (time.perf_counter() - t)

    return asyncio.run(main())


def _tpe(fn, n: int, workers: int) -> float:
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        ex.submit(fn).result()
        t = time.perf_counter()
        concurrent.futures.wait([ex.submit(fn) for _ in range(n)])
        return n / (time.perf_counter() - t)


def _ppe(fn, n: int, workers: int) -> float:
    with concurrent.futures.ProcessPoolExecutor(workers) as ex:
        ex.submit(fn).result()
        t = time.perf_counter()
        concurrent.futures.wait([ex.submit(fn) for _ in range(n)])
        return n / (time.perf_counter() - t)


def _mp_apply_async(fn, n: int, workers: int) -> float:
    with multiprocessing.Pool(workers) as mp:
        mp.apply_async(fn).get()
        t = time.perf_counter()
        for r in [mp.apply_async(fn) for _ in range(n)]:
            r.get()
        return n / (time.perf_counter() - t)


def _gather_semaphore(fn, n: int, workers: int) -> float:
    async def main():
        sem = asyncio.Semaphore(workers)

        async def one():
            async with sem:
                return await fn()

        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t)

    return asyncio.run(main())


def _taskgroup_consumers(fn, n: int, workers: int) -> float:
    """The canonical asyncio worker pool: W consumer tasks on an asyncio.Queue, the
    producer puts the jobs and joins the queue; each job's result goes to a future."""

    async def main():
        q: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def consumer():
            while True:
                f, out = await q.get()
                out.set_result(await f())
                q.task_done()

        t = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(consumer()) for _ in range(workers)]
            results = []
            for _ in range(n):
                out = loop.create_future()
                results.append(out)
                await q.put((fn, out))
            await q.join()
            await asyncio.gather(*results)
            for task in tasks:
                task.cancel()
        return n / (time.perf_counter() - t)

    return asyncio.run(main())


def _latency(submit_and_wait, rounds: int = 2000) -> float:
    submit_and_wait()
    t = time.perf_counter()
    for _ in range(rounds):
        submit_and_wait()
    return (time.perf_counter() - t) / rounds * 1e6  # µs


def _lat_pb(backend: str) -> float:
    with pools.create_pool(backend, workers=1) as pool:
        return _latency(lambda: pool.submit(noop).result())


def _lat_tpe() -> float:
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return _latency(lambda: ex.submit(noop).result())


def _lat_mp() -> float:
    with multiprocessing.Pool(1) as mp:
        return _latency(lambda: mp.apply_async(noop).get())


def implementations(jobs: int) -> dict[str, dict[str, tuple]]:
    """case -> impl -> (callable, higher_is_better); the first impl of a pair is ours."""
    n, nsleep = jobs, max(200, jobs // 20)
    return {
        "noop": {
            "thread": (lambda: _pb("thread", noop, n, 2), True),
            "ThreadPoolExecutor": (lambda: _tpe(noop, n, 2), True),
            "process": (lambda: _pb("process", noop, n // 4, 2), True),
            "ProcessPoolExecutor": (lambda: _ppe(noop, n // 4, 2), True),
            "mp.Pool.apply_async": (lambda: _mp_apply_async(noop, n // 4, 2), True),
            "asyncio (own loop)": (lambda: _pb_async_own_loop(anoop, n, 2), True),
            "gather+Semaphore": (lambda: _gather_semaphore(anoop, n, 2), True),
            "TaskGroup consumers": (lambda: _taskgroup_consumers(anoop, n, 2), True),
        },
        "sleep1": {
            "thread": (lambda: _pb("thread", sleep1, nsleep, 8), True),
            "ThreadPoolExecutor": (lambda: _tpe(sleep1, nsleep, 8), True),
            "process": (lambda: _pb("process", sleep1, nsleep, 8), True),
            "ProcessPoolExecutor": (lambda: _ppe(sleep1, nsleep, 8), True),
            "ideal (8 / measured sleep)": (lambda: 8 / _measured_sleep(), True),
        },
        "latency": {
            "thread": (lambda: _lat_pb("thread"), False),
            "ThreadPoolExecutor": (_lat_tpe, False),
            "process": (lambda: _lat_pb("process"), False),
            "mp.Pool.apply_async": (_lat_mp, False),
        },
    }


def _measured_sleep() -> float:
    t = time.perf_counter()
    for _ in range(200):
        time.sleep(0.001)
    return (time.perf_counter() - t) / 200


PAIRS = [  # (case, ours, theirs, the target ratio or None)
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
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--one", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    impls = implementations(args.jobs)
    if args.one:
        case, impl = args.one
        print(json.dumps({"value": impls[case][impl][0]()}))
        return 0

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from scenarios.stats import compare, median_ci

    values: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.repeats):
        for case, table in impls.items():
            names = list(table)
            shift = rep % len(names)
            for impl in names[shift:] + names[:shift]:  # rotated: drift hits every impl alike
                out = subprocess.run(
                    [sys.executable, __file__, "--jobs", str(args.jobs), "--one", case, impl],
                    capture_output=True, text=True, timeout=600,
                )
                if out.returncode != 0:
                    print(f"{case}/{impl} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    continue
                values.setdefault((case, impl), []).append(json.loads(out.stdout)["value"])
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    unit = {"noop": "jobs/s", "sleep1": "jobs/s", "latency": "µs"}
    print(f"\nmedians of {args.repeats} interleaved repeats, each in a fresh process "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    for (case, impl), vals in values.items():
        est = median_ci(vals)
        print(f"  {case:<8} {impl:<28} {est.median:>12,.1f} {unit[case]}  [{est.low:,.1f}, {est.high:,.1f}]")
    print("\nratios (ours / theirs; latency: theirs / ours, so higher is better everywhere)")
    for case, ours, theirs, target in PAIRS:
        a, b = values.get((case, ours)), values.get((case, theirs))
        if not a or not b:
            continue
        higher = impls[case][ours][1]
        c = compare(a, b, higher_is_better=higher)
        ratio = c.ratio if higher else 1 / c.ratio
        ratios = sorted((x / y if higher else y / x) for x, y in zip(a, b))
        goal = "" if target is None else f"  target >= {target:.2f}: {'met' if ratio >= target else 'NOT met'}"
        print(f"  {case:<8} {ours} vs {theirs}: {ratio:.2f}x (per-repeat {ratios[0]:.2f}-{ratios[-1]:.2f}; "
              f"{c.verdict}, p={c.p_value:.3f}){goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
