"""The dask pool beside raw ``client.map``, on the same LocalCluster, in one process.

For each workload (a no-op, a 1 ms sleep) and each repeat, interleaved:

- raw: ``client.gather(client.map(fn, range(N), pure=False))`` with a plain Client;
- pool: ``pools.create_pool("dask", address=...)`` as a user makes it (default
  ``workers``, default ``queue_size``): submit all N jobs, then take every result.

Both are timed the same way: from the first call that hands work over to the last result
in hand. Before each measurement the cluster is idle: the previous round's tasks are
released and the scheduler holds none, so neither side pays for the other's cleanup.
The pools are started (connected) before the first round, as a Client is.

The cluster is the one the dask pool starts by itself (a LocalCluster on 127.0.0.1 in a
child process, threads by default). Prints each repeat's throughputs and ratio pool / raw,
then the medians. Run from the repository root::

    .venv/bin/python benchmarks/dask_vs_client_map.py [--n 1000] [--threads 4] [--repeats 5] [--workers 4 16]

``--workers`` adds pools with those ``workers`` (jobs on the cluster at once) beside the
default one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pools
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
                raw_map(client, fn, 50)  # warm up: imports, first graph, the function's pickle
                for _, pool in made:
                    pool_map(pool, client, fn, 50)
                raw: list[float] = []
                got: dict[str, list[float]] = {label: [] for label, _ in made}
                for r in range(args.repeats):
                    raw.append(raw_map(client, fn, args.n))
                    line = f"  {name} repeat {r + 1}: raw {raw[-1]:6.0f}/s"
                    for label, pool in made:
                        got[label].append(pool_map(pool, client, fn, args.n))
                        line += (
                            f"  pool(workers={pool.workers}) {got[label][-1]:6.0f}/s = {got[label][-1] / raw[-1]:.2f}x"
                        )
                    print(line, flush=True)
                base = statistics.median(raw)
                print(f"{name}: median of {args.repeats}")
                print(f"  raw client.map                 {base:8.0f} items/s")
                for label, pool in made:
                    med = statistics.median(got[label])
                    ratios = [p / r for p, r in zip(got[label], raw, strict=False)]
                    tag = f"workers={pool.workers}" + (" (default)" if label == "default" else "")
                    print(
                        f"  dask pool, {tag:<22} {med:6.0f} items/s   ratio of medians {med / base:.2f}x, "
                        f"per repeat {min(ratios):.2f}-{max(ratios):.2f}x (median {statistics.median(ratios):.2f}x)"
                    )
        finally:
            for _, pool in made:
                pool.shutdown()
            client.close()
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
