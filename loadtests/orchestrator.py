"""``poolbench loadtest``'s work: the service in one process, locust headless in others.

::

    run_loadtest ─┬─▶ python -m poolbench.service --port 0    (the pool lives here)
                  │        ▲ HTTP on 127.0.0.1 only
                  └─▶ locust --master ──▶ K × locust --worker  (gevent lives here)
                        (or one plain locust process when K = 0)

This process runs no pool and imports no locust: it starts both, watches the clock, scrapes ``/metrics`` at the end, stops the service with SIGTERM (it
drains), and writes ``summary.json`` next to locust's CSVs and HTML report, in
``results/loadtests/<UTC timestamp>-<backend>/``. The service is started by its
module path, never imported: it belongs to the application shell, above this package.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from . import profiles
from .config import LoadTest
from .processes import STOP_TIMEOUT, Child, free_port, watch
from .results import parse_metrics, print_summary, summarize

__all__ = ["parse_mix", "run_loadtest"]

SERVICE = "poolbench.service"  # run as `python -m`
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SERVICE_START_TIMEOUT = 60.0
LOCUST_START_ALLOWANCE = 60.0  # seconds for the locust processes to start and meet


def run_loadtest(config: LoadTest) -> int:
    """Run one load test; 0 if every request was answered as expected and the
    service drained without losing a job, else 1."""
    mix = list(config.mix)
    workers = config.workers or _default_workers(config.backend)
    capacity = profiles.estimate_capacity(mix, config.backend, workers, os.cpu_count() or 1)
    user_rate = config.user_rate
    if config.shape == "overload":
        user_rate = 2 * capacity / config.users  # each iteration submits one job
    out = _results_dir(Path(config.results_dir), config.backend)
    token = secrets.token_urlsafe(16)
    uncosted = sorted({e.type for e in mix} - set(profiles.COSTED))
    print(
        f"poolbench loadtest: {config.shape}, {config.users} users, {config.duration:g}s against {config.backend} "
        f"({workers} workers, capacity ~{capacity:.0f} jobs/s"
        + (f", not counting the work of {', '.join(uncosted)}" if uncosted else "")
        + f"); results in {out}",
        flush=True,
    )
    service, url = _start_service(config, out, token)
    children: list[Child] = []
    service_cpu = machine_busy = None
    metrics: dict[str, float] = {}
    try:
        env = {
            **os.environ,
            profiles.ENV_MIX: profiles.mix_to_env(mix),
            profiles.ENV_SHAPE: config.shape,
            profiles.ENV_USERS: str(config.users),
            profiles.ENV_SPAWN_RATE: str(config.spawn_rate),
            profiles.ENV_DURATION: str(config.duration),
            profiles.ENV_USER_RATE: str(user_rate),
            profiles.ENV_TOKEN: token,
        }
        for role, cmd in _locust_commands(config, url, out):
            children.append(Child(role, cmd, out / f"locust-{role}.log", env))
        peaks = watch(children, service, config.duration + LOCUST_START_ALLOWANCE + 30)
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
        service.stop(config.drain_timeout + STOP_TIMEOUT)
    summary = summarize(config, out, children, service, service_cpu, metrics, capacity, user_rate)
    cpus = os.cpu_count() or 1
    summary["machine"] = {
        "cpus": cpus,
        "busy_peak_cores": machine_busy,
        # Everything here shares these cores: locust, the service, and whatever else runs.
        "saturated": machine_busy is not None and machine_busy >= 0.9 * cpus,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print_summary(summary, out)
    ok = (
        summary["requests"]["total"] > 0
        and summary["requests"]["failures"] == 0
        and service.proc.returncode == 0
        and (summary["service"]["drain"] or {}).get("lost", 1) == 0
    )
    return 0 if ok else 1


def parse_mix(spec: str, registry: Any) -> tuple[profiles.MixEntry, ...]:
    """The mix ``spec`` (see ``profiles.parse_mix``) over the job types of
    ``registry`` (a ``scenarios.jobtypes.Registry``), each entry's data checked by its
    type's model, before any process starts: ValueError naming the type and the field."""
    from pools import InvalidArgument

    mix = tuple(profiles.parse_mix(spec, {name: jt.example for name, jt in registry.items()}))
    for e in mix:
        try:
            registry.validate(e.type, e.data)
        except InvalidArgument as err:
            hint = ""
            if not e.data:
                hint = (
                    f'; give its data in a JSON mix, \'[{{"type": "{e.type}", "data": {{...}}}}]\', '
                    "or an example= in its JobType"
                )
            raise ValueError(f"job type {e.type!r}: {err}{hint}") from None
    return mix


def _default_workers(backend: str) -> int:
    from pools._registry import backend_class

    return backend_class(backend).default_workers()


def _start_service(config: LoadTest, out: Path, token: str) -> tuple[Child, str]:
    cmd = [
        sys.executable,
        "-m",
        SERVICE,
        "--backend",
        config.backend,
        "--queue-size",
        str(config.queue_size),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--drain-timeout",
        str(config.drain_timeout),
        "--drain-report",
        str(out / "drain.json"),
    ]
    if config.workers:
        cmd += ["--workers", str(config.workers)]
    for module in config.jobtypes:
        cmd += ["--jobtypes", module]
    env = {**os.environ, profiles.ENV_TOKEN: token}
    service = Child("service", cmd, out / "service.log", env, stdout=subprocess.PIPE)
    stdout = service.proc.stdout
    assert stdout is not None  # a pipe, asked for above
    ready = select.select([stdout], [], [], SERVICE_START_TIMEOUT)[0]
    line = stdout.readline().decode() if ready else ""
    stdout.close()
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


def _locust_commands(config: LoadTest, url: str, out: Path) -> list[tuple[str, list[str]]]:
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
    if not config.locust_workers:
        return [("locust", base + run)]
    port = free_port()
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
            str(config.locust_workers),
            "--expect-workers-max-wait",
            "60",
        ]
    )
    worker = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    return [("master", master)] + [(f"worker-{i + 1}", worker) for i in range(config.locust_workers)]


def _results_dir(root: Path, backend: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = root / f"{stamp}-{backend}"
    n = 1
    while out.exists():
        n += 1
        out = root / f"{stamp}-{backend}-{n}"
    out.mkdir(parents=True)
    return out
