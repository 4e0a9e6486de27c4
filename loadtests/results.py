"""What a load test leaves behind, read back: locust's CSVs, the service's last
``/metrics`` scrape and its drain report, summed up in ``summary.json``."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from .config import LoadTest
from .processes import Child

__all__ = ["BOTTLENECK_CPU", "parse_metrics", "print_summary", "read_stats", "summarize"]

BOTTLENECK_CPU = 0.90  # a locust process using this much of a core limits the load
_CPU_WARNINGS = re.compile(r"CPU usage above|exceeded cpu threshold", re.I)


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
    config: LoadTest,
    out: Path,
    children: list[Child],
    service: Child,
    service_cpu: float | None,
    metrics: dict[str, float],
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
            "backend": config.backend,
            "workers": config.workers,
            "queue_size": config.queue_size,
            "shape": config.shape,
            "users": config.users,
            "spawn_rate": config.spawn_rate,
            "duration_s": config.duration,
            "locust_workers": config.locust_workers,
            "user_rate": user_rate,
            "mix": [e.body() | {"weight": e.weight} for e in config.mix],
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


def print_summary(summary: dict[str, Any], out: Path) -> None:
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
