"""The dask pool beside raw ``client.map``, on the same LocalCluster, in one process.

For each workload (a no-op, a 1 ms sleep) and each repeat, interleaved and rotated
(each repeat starts with the next contender, as the scenario runner does, so that
neither drift nor going first favours one):

- raw: ``client.gather(client.map(fn, range(N), pure=False))`` with a plain Client:
  one Dask task per item;
- chunked: the same Client, the items cut by hand into chunks of 16 (the most jobs
  the pool packs into one task), one task per chunk that runs ``fn`` over it;
- pool: ``pools.create_pool("dask", address=...)`` as a user makes it (default
  ``workers``, default ``queue_size``): submit all N jobs, then take every result.
  With more jobs waiting than the cluster has threads, it packs up to 16 jobs into
  a task: beside raw ``client.map`` it compares packed jobs with one task per item;
  beside the chunked map, packing with packing.

All are timed the same way: from the first call that hands work over to the last result
in hand. Before each measurement the cluster is idle: the previous round's tasks are
released and the scheduler holds none, so no side pays for another's cleanup.
The pools are started (connected) and warmed before the first round, as the Client is.

The cluster is the one the dask pool starts by itself (a LocalCluster on 127.0.0.1 in a
child process, threads by default). Prints each repeat's throughputs and the pool's
ratios, then the medians. Run from the repository root::

    .venv/bin/python benchmarks/dask_vs_client_map.py [--n 1000] [--threads 4] [--repeats 5] [--workers 4 16]

``--workers`` adds pools with those ``workers`` (jobs on the cluster at once) beside the
default one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pools
from pools.dask._client import _PACK_JOBS as _PACK
from pools.dask._cluster import LocalClusterProcess


def noop(i):
    return i


def sleep_1ms(i):
    time.sleep(0.001)
    return i


def _scheduler_tasks(dask_scheduler=None) -> int:
    return len(dask_scheduler.tasks)


def wait_idle(client, timeout: float = 60.0) -> None:
    """Until the scheduler holds no task (the last round's are released and forgotten)."""
    deadline = time.monotonic() + timeout
    while client.run_on_scheduler(_scheduler_tasks):
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster still holds tasks after the round ended")
        time.sleep(0.01)


def raw_map(client, fn, n: int) -> float:
    wait_idle(client)
    t0 = time.perf_counter()
    futures = client.map(fn, range(n), pure=False)
    results = client.gather(futures)
    elapsed = time.perf_counter() - t0
    assert results == list(range(n))
    del futures  # released: the next round starts on an empty cluster
    return n / elapsed


def _run_chunk(fn, items):
    return [fn(i) for i in items]


def chunked_map(client, fn, n: int, size: int = _PACK) -> float:
    wait_idle(client)
    t0 = time.perf_counter()
    chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    futures = client.map(_run_chunk, [fn] * len(chunks), chunks, pure=False)
    results = [x for part in client.gather(futures) for x in part]
    elapsed = time.perf_counter() - t0
    assert results == list(range(n))
    del futures
    return n / elapsed


def pool_map(pool, client, fn, n: int) -> float:
    wait_idle(client)
    t0 = time.perf_counter()
    jobs = [pool.submit(fn, i) for i in range(n)]
    results = [job.result() for job in jobs]  # raises the first failure, if any
    elapsed = time.perf_counter() - t0
    assert results == list(range(n))
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="items per run (default 1000)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the LocalCluster (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, interleaved (default 5)")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[],
        help="also pools with these workers (jobs on the cluster at once); the default pool always runs",
    )
    args = parser.parse_args()

    from distributed import Client

    cluster = LocalClusterProcess(args.threads, processes=False)
    try:
        client = Client(cluster.address, set_as_default=False)
        made = [("default", pools.create_pool("dask", address=cluster.address).start())]
        made += [(str(w), pools.create_pool("dask", address=cluster.address, workers=w).start()) for w in args.workers]
        try:
            print(
                f"N={args.n}, LocalCluster of {args.threads} threads (127.0.0.1), {args.repeats} interleaved "
                f"repeats; pools: "
                + ", ".join(f"workers={p.workers}" + (" (default)" if label == "default" else "") for label, p in made)
            )
            for name, fn in (("no-op", noop), ("1 ms sleep", sleep_1ms)):
                contenders = [
                    ("raw client.map", lambda fn=fn: raw_map(client, fn, args.n)),
                    (f"client.map, chunks of {_PACK}", lambda fn=fn: chunked_map(client, fn, args.n)),
                ] + [
                    (
                        f"pool(workers={pool.workers}{', default' if tag == 'default' else ''})",
                        lambda fn=fn, pool=pool: pool_map(pool, client, fn, args.n),
                    )
                    for tag, pool in made
                ]
                # warm up every side: imports, first graph, the function's pickle
                raw_map(client, fn, 50)
                chunked_map(client, fn, 50)
                for _, pool in made:
                    pool_map(pool, client, fn, 50)
                got: dict[str, list[float]] = {label: [] for label, _ in contenders}
                for r in range(args.repeats):
                    shift = r % len(contenders)
                    for label, measure in contenders[shift:] + contenders[:shift]:
                        got[label].append(measure())
                    print(
                        f"  {name} repeat {r + 1}: "
                        + "  ".join(f"{label} {got[label][-1]:6.0f}/s" for label, _ in contenders),
                        flush=True,
                    )
                print(f"{name}: median of {args.repeats} (items/s); ratios: the pool over each map, per repeat")
                raw, chunked = got["raw client.map"], got[f"client.map, chunks of {_PACK}"]
                for label, _ in contenders:
                    med = statistics.median(got[label])
                    line = f"  {label:<26} {med:8.0f} items/s"
                    if label.startswith("pool"):
                        for other, base in (("raw", raw), ("chunked", chunked)):
                            ratios = [p / b for p, b in zip(got[label], base, strict=False)]
                            line += (
                                f"   / {other} {med / statistics.median(base):.2f}x "
                                f"(per repeat {min(ratios):.2f}-{max(ratios):.2f}x)"
                            )
                    print(line)
        finally:
            for _, pool in made:
                pool.shutdown()
            client.close()
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
