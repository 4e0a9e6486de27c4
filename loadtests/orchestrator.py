"""``poolbench loadtest``: the service in one process, locust headless in others.

::

    poolbench loadtest ─┬─▶ python -m pools.service --port 0      (the pool lives here)
                        │        ▲ HTTP on 127.0.0.1 only
                        └─▶ locust --master ──▶ K × locust --worker  (gevent lives here)
                              (or one plain locust process when K = 0)

This process imports neither locust nor the pools: it starts both, watches the
clock, scrapes ``/metrics`` at the end, stops the service with SIGTERM (it drains),
and writes ``summary.json`` next to locust's CSVs and HTML report, in
``results/loadtests/<UTC timestamp>-<backend>/``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pools._cliargs import non_negative_int, positive_float, positive_int

from . import profiles

__all__ = ["add_command", "run_loadtest"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SERVICE_START_TIMEOUT = 60.0
LOCUST_START_ALLOWANCE = 60.0  # seconds for the locust processes to start and meet
STOP_TIMEOUT = 30.0
BOTTLENECK_CPU = 0.90  # a locust process using this much of a core limits the load
_CPU_WARNINGS = re.compile(r"CPU usage above|exceeded cpu threshold", re.I)


def parse_duration(text: str) -> float:
    """``30``, ``30s``, ``2m``, ``1m30s``, ``1h`` → seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
        if not parts or not any(parts.groups()):
            raise argparse.ArgumentTypeError(f"duration must look like 30s, 2m or 1m30s, got {text!r}")
        h, m, s = (int(g or 0) for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if not 0 < seconds <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"duration must be > 0 and at most 24h, got {text!r}")
    return seconds


# ---------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Child:
    """A child process whose exit we await with a deadline and whose CPU time we
    read from its rusage (``wait4``)."""

    def __init__(self, role: str, cmd: list[str], log: Path, env: dict[str, str], stdout: Any = None) -> None:
        self.role = role
        self.log = log
        self._log = open(log, "w")  # noqa: SIM115 - open for the child's life, closed in wait()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=stdout or self._log, stderr=self._log, stdin=subprocess.DEVNULL, env=env
        )
        self.cpu: float | None = None
        self.wall: float | None = None
        self.peak: float | None = None  # busiest few seconds, in cores (see _watch)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it did not end within ``timeout``."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            fd = os.pidfd_open(self.proc.pid)
        except OSError:
            return self.proc.wait(timeout)
        try:
            if not select.select([fd], [], [], max(0.0, timeout))[0]:
                return None
        finally:
            os.close(fd)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime
        self.wall = time.monotonic() - self.started
        self._log.close()
        return self.proc.returncode

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> int:
        # os.kill, not Popen.send_signal: its poll() would reap the child and lose its rusage.
        rc = self.wait(0)
        if rc is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            rc = self.wait(timeout)
        if rc is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            rc = self.wait(10.0)
        return rc if rc is not None else -signal.SIGKILL

    def cpu_fraction(self) -> float | None:
        return None if self.cpu is None or not self.wall else round(self.cpu / self.wall, 3)


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _watch(children: list[_Child], service: _Child, timeout: float, window: int = 3) -> dict[str, float]:
    """Wait for the first child (locust, or its master) to end, sampling every
    process's CPU time each second; return each one's busiest ``window``-second
    average, in cores. Averages over the whole run would hide a saturated load
    generator behind its start-up and wind-down."""
    procs = {c.role: c.proc.pid for c in children} | {"service": service.proc.pid}
    samples: list[tuple[float, dict[str, float | None]]] = []
    deadline = time.monotonic() + timeout
    while children[0].wait(1.0) is None:
        sample = {role: _cpu_seconds(pid) for role, pid in procs.items()}
        sample["machine"] = _machine_busy_seconds()
        samples.append((time.monotonic(), sample))
        if time.monotonic() > deadline:
            print("poolbench loadtest: locust overran its time; stopping it", file=sys.stderr)
            break
    peaks: dict[str, float] = {}
    for (t0, a), (t1, b) in zip(samples, samples[window:], strict=False):
        for role in [*procs, "machine"]:
            if a.get(role) is not None and b.get(role) is not None:
                peaks[role] = max(peaks.get(role, 0.0), round((b[role] - a[role]) / (t1 - t0), 3))
    return peaks


def _start_service(args: argparse.Namespace, out: Path, token: str) -> tuple[_Child, str]:
    cmd = [
        sys.executable,
        "-m",
        "pools.service",
        "--backend",
        args.backend,
        "--queue-size",
        str(args.queue_size),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--drain-timeout",
        str(args.drain_timeout),
        "--drain-report",
        str(out / "drain.json"),
    ]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    env = {**os.environ, profiles.ENV_TOKEN: token}
    service = _Child("service", cmd, out / "service.log", env, stdout=subprocess.PIPE)
    ready = select.select([service.proc.stdout], [], [], SERVICE_START_TIMEOUT)[0]
    line = service.proc.stdout.readline().decode() if ready else ""
    service.proc.stdout.close()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        service.stop()
        raise RuntimeError(f"the service did not start; see {service.log}:\n{service.log.read_text()[-2000:]}")
    url = match.group(0)
    _get(url + "/healthz", token, timeout=SERVICE_START_TIMEOUT)  # waits for the app's startup
    return service, url


def _get(url: str, token: str, timeout: float = 10.0) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return r.read()


def _locust_commands(args: argparse.Namespace, url: str, out: Path) -> list[tuple[str, list[str]]]:
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    # The shape class ends the run (locust ignores --run-time with one); run_loadtest's clock is the backstop.
    run = [
        "--headless",
        "--host",
        url,
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--html",
        str(out / "report.html"),
        "--only-summary",
        "--stop-timeout",
        "5",
    ]
    if not args.locust_workers:
        return [("locust", base + run)]
    port = _free_port()
    master = (
        base
        + run
        + [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(args.locust_workers),
            "--expect-workers-max-wait",
            "60",
        ]
    )
    worker = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    return [("master", master)] + [(f"worker-{i + 1}", worker) for i in range(args.locust_workers)]


# ---------------------------------------------------------------- results


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_stats(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append(
                {
                    "type": row["Type"],
                    "name": row["Name"],
                    "count": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "rps": _number(row["Requests/s"]),
                    "median_ms": _number(row["50%"]),
                    "p95_ms": _number(row["95%"]),
                    "p99_ms": _number(row["99%"]),
                    "max_ms": _number(row["Max Response Time"]),
                }
            )
    return rows


def parse_metrics(text: str) -> dict[str, float]:
    """The pool's and the service's own series, without the labels."""
    out = {}
    for line in text.splitlines():
        if line.startswith(("poolbench_pool_", "poolbench_service_")) and "quantile" not in line:
            name, _, value = line.rpartition(" ")
            out[name.split("{")[0]] = float(value)
    return out


def summarize(
    args: argparse.Namespace,
    out: Path,
    children: list[_Child],
    service: _Child,
    service_cpu: float | None,
    metrics: dict[str, float],
    mix: list[profiles.MixEntry],
    capacity: float,
    user_rate: float,
) -> dict[str, Any]:
    stats_path = out / "locust_stats.csv"
    rows = read_stats(stats_path) if stats_path.exists() else []
    requests = [r for r in rows if r["type"] not in ("JOB", "") and r["name"] != "Aggregated"]
    jobs = {r["name"].removeprefix("JOB "): r for r in rows if r["type"] == "JOB"}
    total = sum(r["count"] for r in requests)
    failures = sum(r["failures"] for r in requests)
    by_name = {r["name"]: r for r in requests}
    backpressure = by_name.get("POST /jobs [503 back-pressure]", {}).get("count", 0)
    accepted = by_name.get("POST /jobs", {}).get("count", 0)
    warnings = []
    for child in children:
        if child.log.exists():
            warnings += [
                f"{child.role}: {line.strip()}"
                for line in child.log.read_text().splitlines()
                if _CPU_WARNINGS.search(line)
            ]
    generators = [c for c in children if c.role != "master"]  # the master only coordinates
    busiest = max((c.peak or 0.0 for c in generators), default=0.0)
    bottleneck = bool(warnings) or busiest >= BOTTLENECK_CPU
    reason = None
    if bottleneck:
        reason = (
            f"a locust process used {busiest:.0%} of a core at its busiest"
            if busiest >= BOTTLENECK_CPU
            else "locust warned"
        )
        reason += ": the load generator, not the service, may have limited the rate; add --locust-workers"
    drain_path = out / "drain.json"
    return {
        "schema": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "backend": args.backend,
            "workers": args.workers,
            "queue_size": args.queue_size,
            "shape": args.shape,
            "users": args.users,
            "spawn_rate": args.spawn_rate,
            "duration_s": args.duration,
            "locust_workers": args.locust_workers,
            "user_rate": user_rate,
            "mix": [e.body() | {"weight": e.weight} for e in mix],
        },
        "capacity_estimate_jobs_per_s": round(capacity, 1),
        "requests": {
            "total": total,
            "failures": failures,
            "accepted_202": accepted,
            "backpressure_503": backpressure,
            "rps": round(sum(r["rps"] or 0.0 for r in requests), 1),
            "post_jobs_p50_ms": by_name.get("POST /jobs", {}).get("median_ms"),
            "post_jobs_p99_ms": by_name.get("POST /jobs", {}).get("p99_ms"),
        },
        "by_name": requests,
        "jobs": {
            status: {"count": r["count"], "p50_ms": r["median_ms"], "p99_ms": r["p99_ms"]} for status, r in jobs.items()
        },
        "service": {
            "exit_code": service.proc.returncode,
            "cpu_peak": service_cpu,
            "pool": {
                k.removeprefix("poolbench_pool_"): v for k, v in metrics.items() if k.startswith("poolbench_pool_")
            },
            "drain": json.loads(drain_path.read_text()) if drain_path.exists() else None,
        },
        "locust": {
            "processes": [
                {"role": c.role, "exit_code": c.proc.returncode, "cpu_fraction": c.cpu_fraction(), "cpu_peak": c.peak}
                for c in children
            ],
            "cpu_warnings": warnings,
            "bottleneck": bottleneck,
            "bottleneck_reason": reason,
        },
        "files": sorted(p.name for p in out.iterdir()),
    }


def _results_dir(root: Path, backend: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = root / f"{stamp}-{backend}"
    n = 1
    while out.exists():
        n += 1
        out = root / f"{stamp}-{backend}-{n}"
    out.mkdir(parents=True)
    return out


# ---------------------------------------------------------------- the command


def run_loadtest(args: argparse.Namespace) -> int:
    try:
        mix = profiles.parse_mix(args.mix)
        _check_mix(mix)
    except (ValueError, OSError) as e:
        print(f"poolbench loadtest: --mix: {e}", file=sys.stderr)
        return 2
    workers = args.workers or _default_workers(args.backend)
    capacity = profiles.estimate_capacity(mix, args.backend, workers, os.cpu_count() or 1)
    user_rate = args.user_rate
    if args.shape == "overload":
        user_rate = 2 * capacity / args.users  # each iteration submits one job
    out = _results_dir(Path(args.results_dir), args.backend)
    token = secrets.token_urlsafe(16)
    print(
        f"poolbench loadtest: {args.shape}, {args.users} users, {args.duration:g}s against {args.backend} "
        f"({workers} workers, capacity ~{capacity:.0f} jobs/s); results in {out}",
        flush=True,
    )
    service, url = _start_service(args, out, token)
    children: list[_Child] = []
    service_cpu = machine_busy = None
    metrics: dict[str, float] = {}
    try:
        env = {
            **os.environ,
            profiles.ENV_MIX: profiles.mix_to_env(mix),
            profiles.ENV_SHAPE: args.shape,
            profiles.ENV_USERS: str(args.users),
            profiles.ENV_SPAWN_RATE: str(args.spawn_rate),
            profiles.ENV_DURATION: str(args.duration),
            profiles.ENV_USER_RATE: str(user_rate),
            profiles.ENV_TOKEN: token,
        }
        for role, cmd in _locust_commands(args, url, out):
            children.append(_Child(role, cmd, out / f"locust-{role}.log", env))
        peaks = _watch(children, service, args.duration + LOCUST_START_ALLOWANCE + 30)
        service_cpu = peaks.pop("service", None)
        machine_busy = peaks.pop("machine", None)
        for child in children:
            child.peak = peaks.get(child.role)
        metrics_text = _get(url + "/metrics", token).decode()
        (out / "metrics.txt").write_text(metrics_text)
        metrics = parse_metrics(metrics_text)
    finally:
        for child in children:  # workers leave when the master quits; this is the backstop
            child.stop(STOP_TIMEOUT if child is children[0] else 15.0, sig=signal.SIGINT)
        service.stop(args.drain_timeout + STOP_TIMEOUT)
    summary = summarize(args, out, children, service, service_cpu, metrics, mix, capacity, user_rate)
    cpus = os.cpu_count() or 1
    summary["machine"] = {
        "cpus": cpus,
        "busy_peak_cores": machine_busy,
        # Everything here shares these cores: locust, the service, and whatever else runs.
        "saturated": machine_busy is not None and machine_busy >= 0.9 * cpus,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _print(summary, out)
    ok = (
        summary["requests"]["total"] > 0
        and summary["requests"]["failures"] == 0
        and service.proc.returncode == 0
        and (summary["service"]["drain"] or {}).get("lost", 1) == 0
    )
    return 0 if ok else 1


def _check_mix(mix: list[profiles.MixEntry]) -> None:
    """Validate the mix here, with the service's own rules, before any process starts."""
    from pools import InvalidArgument
    from scenarios import jobtypes  # light: no pool is made here

    for e in mix:
        try:
            jobtypes.validate(e.type, e.data)
        except InvalidArgument as err:
            raise ValueError(f"{e.type}: {err}") from None


def _default_workers(backend: str) -> int:
    from pools._registry import backend_class

    return backend_class(backend).default_workers()


def _print(summary: dict[str, Any], out: Path) -> None:
    r = summary["requests"]
    print(
        f"requests {r['total']} ({r['rps']}/s), accepted {r['accepted_202']}, back-pressure 503s "
        f"{r['backpressure_503']}, failures {r['failures']}; POST /jobs p50 {r['post_jobs_p50_ms']} ms, "
        f"p99 {r['post_jobs_p99_ms']} ms"
    )
    jobs = ", ".join(f"{k} {v['count']}" for k, v in summary["jobs"].items())
    print(f"jobs fetched finished: {jobs or 'none'}; service CPU {summary['service']['cpu_peak']} cores")
    if summary["locust"]["bottleneck"]:
        print(f"WARNING: {summary['locust']['bottleneck_reason']}")
    m = summary["machine"]
    if m["saturated"]:
        print(
            f"WARNING: all {m['cpus']} CPUs were busy ({m['busy_peak_cores']} cores at the peak): locust and the "
            "service competed for them (and with anything else running); the rates are lower bounds"
        )
    print(f"summary: {out / 'summary.json'}")


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loadtest",
        help="load-test the HTTP service with locust (headless), in separate processes",
        description="Start the service, run locust headless against it on 127.0.0.1, and store locust's CSVs, "
        "its HTML report and summary.json in RESULTS_DIR/<UTC timestamp>-<backend>/.",
    )
    p.add_argument("--backend", default="thread", help="pool backend of the service (default thread)")
    p.add_argument("--workers", type=positive_int, default=None, help="pool workers (default: the backend's)")
    p.add_argument("--queue-size", type=non_negative_int, default=1000, help="the service's queue size (default 1000)")
    p.add_argument("--users", type=positive_int, default=10, help="locust users at the peak (default 10)")
    p.add_argument("--spawn-rate", type=positive_float, default=10.0, help="users started per second (default 10)")
    p.add_argument("--duration", type=parse_duration, default=30.0, help="how long: 30s, 2m... (default 30s)")
    p.add_argument(
        "--shape",
        choices=profiles.SHAPES,
        default="steady",
        help="steady, ramp, spike, or overload (about 2x what the pool can serve)",
    )
    p.add_argument(
        "--locust-workers",
        type=non_negative_int,
        default=0,
        help="run locust distributed here: one master and K workers (default 0: one process)",
    )
    p.add_argument(
        "--mix",
        default=profiles.DEFAULT_MIX,
        help=f"job types and weights, e.g. 'noop:4,sleep:3', or a JSON list / @file.json "
        f"of {{type, weight, data, timeout, retries}} (default {profiles.DEFAULT_MIX})",
    )
    p.add_argument(
        "--user-rate",
        type=float,
        default=0.0,
        help="iterations (one submit + one poll) per second per user; 0: as fast as possible "
        "(default; overload sets its own)",
    )
    p.add_argument(
        "--drain-timeout", type=float, default=10.0, help="the service's drain deadline at the end (default 10)"
    )
    p.add_argument(
        "--results-dir", default="results/loadtests", help="where runs are stored (default results/loadtests)"
    )
    p.set_defaults(func=run_loadtest)
