"""Prometheus metrics of the service: the pool's stats, read at scrape time, and
request counts and latencies, counted by the edge middleware."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["PoolCollector", "RequestMetrics", "route_label"]

_STATIC_ROUTES = frozenset({"/jobs", "/metrics", "/healthz", "/readyz", "/openapi.json", "/docs"})
_METHODS = frozenset({"GET", "POST", "DELETE", "HEAD", "PUT", "PATCH", "OPTIONS"})
# From well under a millisecond (a refused request) to a slow scrape.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def route_label(path: str) -> str:
    """The route template of ``path``: a bounded set of label values, whatever the
    clients send (a label per job id would grow without end)."""
    if path in _STATIC_ROUTES:
        return path
    if path.startswith("/jobs/") and path.find("/", 6) < 0:
        return "/jobs/{job_id}"
    return "other"


class RequestMetrics:
    """``poolbench_http_requests_total{method,route,status}`` and
    ``poolbench_http_request_duration_seconds{method,route}``. Label children are
    cached: looking them up by labels costs more than counting."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "poolbench_http_requests",
            "HTTP requests answered, by route and status",
            ("method", "route", "status"),
            registry=registry,
        )
        self._latency = Histogram(
            "poolbench_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ("method", "route"),
            buckets=_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        key = (method, path, status)
        pair = self._children.get(key)
        if pair is None:
            m = method if method in _METHODS else "other"
            route = route_label(path)
            pair = (self._requests.labels(m, route, str(status)), self._latency.labels(m, route))
            if len(self._children) < 4096:  # paths are unbounded; the label values are not
                self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)


_GAUGES = (
    ("workers", "Workers of the pool"),
    ("busy", "Jobs running now"),
    ("queued", "Jobs waiting for a worker"),
    ("retrying", "Jobs waiting out a retry back-off"),
    ("abandoned", "Threads still running a stopped job (thread backend)"),
)
_COUNTERS = (
    ("submitted", "Jobs accepted"),
    ("succeeded", "Jobs that succeeded"),
    ("failed", "Jobs that failed"),
    ("cancelled", "Jobs cancelled"),
    ("timed_out", "Jobs that timed out"),
    ("rejected", "Jobs refused because the queue was full"),
    ("retried", "Attempts scheduled again after a failure"),
    ("crashed", "Worker processes that died under a job"),
)


class PoolCollector:
    """Reads ``pool.stats()`` at each scrape (one consistent snapshot), and the
    service's own gauges through ``extra()``."""

    def __init__(self, get_pool: Callable[[], Any], extra: Callable[[], dict[str, tuple[str, str, float]]]) -> None:
        self._get_pool = get_pool
        self._extra = extra

    def describe(self) -> list[Metric]:
        return []  # names are fixed; no need to collect at registration

    def collect(self) -> Iterator[Metric]:
        pool = self._get_pool()
        if pool is not None:
            s = pool.stats()
            labels = ("backend",)
            for name, doc in _GAUGES:
                g = GaugeMetricFamily(f"poolbench_pool_{name}", doc, labels=labels)
                g.add_metric((s.backend,), getattr(s, name))
                yield g
            for name, doc in _COUNTERS:
                c = CounterMetricFamily(f"poolbench_pool_{name}", doc, labels=labels)
                c.add_metric((s.backend,), getattr(s, name))
                yield c
            for name, doc in (
                ("queue_wait", "Queue wait of recent attempts"),
                ("run_time", "Run time of recent attempts"),
            ):
                g = GaugeMetricFamily(
                    f"poolbench_pool_{name}_seconds",
                    f"{doc} (latest 8192), by quantile",
                    labels=("backend", "quantile"),
                )
                for q in ("50", "95", "99"):
                    value = getattr(s, f"{name}_p{q}")
                    if value is not None:
                        g.add_metric((s.backend, f"0.{q}"), value)
                yield g
            g = GaugeMetricFamily("poolbench_pool_uptime_seconds", "Seconds since the pool started", labels=labels)
            g.add_metric((s.backend,), s.uptime)
            yield g
        for name, (kind, doc, value) in self._extra().items():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(f"poolbench_service_{name}", doc, value=value)
