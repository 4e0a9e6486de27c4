"""Throughput and latency of ``POST /jobs`` (noop) against a bare FastAPI endpoint.

    python benchmarks/http_bench.py                      # thread backend, 3 rounds of 10 s
    python benchmarks/http_bench.py --backends thread,asyncio,process --rounds 5

Both servers run on uvicorn with uvloop and httptools, one process each, access log
off, bound to 127.0.0.1. The bare one answers ``POST /jobs`` with a 202 and a fixed
body, without reading the request body or touching a pool; the poolbench service
validates the body, submits a ``noop`` job to its pool, records it and counts the
request in its metrics. The same load generator drives both in the same run,
interleaved round by round (bare, service, bare, service...), so that drift of the
machine affects both alike; the figures are the medians over the rounds.

The load generator is wrk (``apt-get install -y wrk``): a single locust process tops
out well below what one uvicorn process serves, so it would measure locust. wrk's
latency percentiles are of the responses it got, from a closed loop of
``--connections`` connections (no coordinated-omission correction).

Not a test: nothing is asserted; the target is a ratio of at least 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

BODY = '{"type": "noop"}'
LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
TARGET = 0.8


# ---------------------------------------------------------------- the bare server


def bare_app():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/jobs", status_code=202)
    async def submit() -> JSONResponse:
        return JSONResponse({"job_id": 0, "status": "accepted"}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_bare() -> None:
    import socket

    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"bare listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        bare_app(),
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        backlog=2048,
    )
    uvicorn.Server(config).run(sockets=[sock])


# ---------------------------------------------------------------- driving


class Server:
    def __init__(self, name: str, cmd: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None  # a pipe, asked for above
        self.stdout = self.proc.stdout
        ready = select.select([self.stdout], [], [], 60)[0]
        line = self.stdout.readline().decode() if ready else ""
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            self.stop()
            raise RuntimeError(f"{name} did not start: {line!r}")
        self.url = match.group(0)
        with urllib.request.urlopen(self.url + "/healthz", timeout=60):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _search(pattern: str, text: str) -> re.Match[str]:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"wrk's output has no line matching {pattern!r}:\n{text}")
    return found


def run_wrk(url: str, script: str, seconds: float, connections: int, threads: int) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script, url + "/jobs"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = float(_search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {q: _ms(v, u) for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = _search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "requests": int(total.group(1)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="thread", help="comma-separated service backends (default thread)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the server gets the other core)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_bare:
        serve_bare()
        return 0
    if shutil.which("wrk") is None:
        print("http_bench: wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    servers = []
    try:
        servers.append(Server("bare FastAPI", [sys.executable, __file__, "--serve-bare"]))
        for backend in args.backends.split(","):
            servers.append(
                Server(
                    f"poolbench {backend}",
                    [
                        sys.executable,
                        "-m",
                        "poolbench.service",
                        "--backend",
                        backend,
                        "--port",
                        "0",
                        "--queue-size",
                        "10000",
                        "--drain-timeout",
                        "5",
                    ],
                )
            )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(LUA)
        results: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
        for server in servers:
            run_wrk(server.url, f.name, args.warmup, args.connections, args.threads)
        for r in range(args.rounds):
            for server in servers:
                got = run_wrk(server.url, f.name, args.duration, args.connections, args.threads)
                results[server.name].append(got)
                print(
                    f"round {r + 1} {server.name:<20} {got['rps']:>8.0f} req/s  p50 {got['p50_ms']:.2f} ms  "
                    f"p99 {got['p99_ms']:.2f} ms  non-2xx {got['non_2xx']}",
                    flush=True,
                )
        os.unlink(f.name)
    finally:
        for server in servers:
            server.stop()

    bare = statistics.median(x["rps"] for x in results["bare FastAPI"])
    summary = {
        "generator": f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s",
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "results": {},
    }
    print(f"\nPOST /jobs, medians of {args.rounds} rounds of {args.duration:g}s, {summary['generator']}:")
    print(f"{'server':<20} {'req/s':>8} {'2xx req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'2xx ratio':>9}")
    for name, runs in results.items():
        rps = statistics.median(x["rps"] for x in runs)
        # A 503 (queue full) is an answer too, but not an accepted job: count those apart.
        accepted = statistics.median(x["rps"] * (1 - x["non_2xx"] / x["requests"]) for x in runs)
        row = {
            "rps": rps,
            "accepted_rps": accepted,
            "p50_ms": statistics.median(x["p50_ms"] for x in runs),
            "p99_ms": statistics.median(x["p99_ms"] for x in runs),
            "ratio": rps / bare,
            "accepted_ratio": accepted / bare,
            "non_2xx": sum(x["non_2xx"] for x in runs),
        }
        summary["results"][name] = row
        print(
            f"{name:<20} {rps:>8.0f} {accepted:>10.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['ratio']:>6.2f} {row['accepted_ratio']:>9.2f}"
        )
    print(f"target: ratio >= {TARGET} (req/s of POST /jobs over the bare endpoint's; '2xx' leaves out 503s)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
