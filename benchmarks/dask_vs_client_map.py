"""The dask pool beside raw ``client.map``, on the same LocalCluster, in one process.

For each workload (a no-op, a 1 ms sleep) and each repeat, interleaved:

- raw: ``client.gather(client.map(fn, range(N), pure=False))`` with a plain Client;
- pool: ``pools.create_pool("dask", address=..., workers=W)``: submit all N jobs
  (the queue holds them all), then wait for every one.

The cluster is the one the dask pool starts by itself (a LocalCluster on 127.0.0.1 in a
child process, threads by default). Prints the median throughput of each and the
ratio pool / raw. Run from the repository root::

    .venv/bin/python benchmarks/dask_vs_client_map.py [--n 1000] [--threads 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time

import pools
from pools.dask import _LocalClusterProcess


def noop(i):
    return i


def sleep_1ms(i):
    time.sleep(0.001)
    return i


def raw_map(client, fn, n: int) -> float:
    t0 = time.perf_counter()
    futures = client.map(fn, range(n), pure=False)
    client.gather(futures)
    elapsed = time.perf_counter() - t0
    client.cancel(futures)  # the next round starts on an empty cluster
    return n / elapsed


def pool_map(pool, fn, n: int) -> float:
    t0 = time.perf_counter()
    jobs = [pool.submit(fn, i) for i in range(n)]
    concurrent.futures.wait(jobs)
    elapsed = time.perf_counter() - t0
    failed = [j for j in jobs if j.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {n} jobs failed; the first: {failed[0].exception()!r}") from failed[0].exception()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="items per run (default 1000)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the LocalCluster (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each, interleaved (default 5)")
    parser.add_argument(
        "--in-flight", type=int, nargs="+", default=None,
        help="pool workers (jobs in flight) to try; default: threads and 4x threads",
    )
    args = parser.parse_args()
    in_flight = args.in_flight or [args.threads, 4 * args.threads]

    from distributed import Client

    cluster = _LocalClusterProcess(args.threads, processes=False)
    try:
        client = Client(cluster.address, set_as_default=False)
        made = [
            pools.create_pool("dask", address=cluster.address, workers=w, queue_size=args.n).start()
            for w in in_flight
        ]
        try:
            for name, fn in (("no-op", noop), ("1 ms sleep", sleep_1ms)):
                raw_map(client, fn, 50)  # warm up: imports, first graph
                for pool in made:
                    pool_map(pool, fn, 50)
                raw: list[float] = []
                got: dict[int, list[float]] = {pool.workers: [] for pool in made}
                for _ in range(args.repeats):
                    raw.append(raw_map(client, fn, args.n))
                    for pool in made:
                        got[pool.workers].append(pool_map(pool, fn, args.n))
                base = statistics.median(raw)
                print(f"{name}, N={args.n}, LocalCluster of {args.threads} threads, {args.repeats} repeats (median):")
                print(f"  raw client.map               {base:8.0f} items/s")
                for w, rates in got.items():
                    med = statistics.median(rates)
                    print(f"  dask pool, workers={w:<3}       {med:8.0f} items/s   ratio {med / base:.2f}x")
        finally:
            for pool in made:
                pool.shutdown()
            client.close()
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
