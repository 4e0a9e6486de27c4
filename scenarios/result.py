"""What one measurement found: one :class:`Result`, which the store's schema follows
(one column per field; ``findings``, the experiment's own dataclass, as JSON).

A measurement's process writes ``result.to_json()``; the runner reads it back with
:meth:`Result.from_json`, which refuses a field it does not know. The findings are
decoded into their dataclass by the experiment that made them
(:func:`scenarios.experiments.decode_findings`), so the report reads attributes,
not keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

__all__ = ["COLUMNS", "METRICS", "Percentiles", "Result", "Timeline", "sql_type"]


@dataclass(frozen=True)
class Percentiles:
    """p50 and p99 (ms) of ``n`` values; None when there were none."""

    p50: float | None = None
    p99: float | None = None
    n: int = 0


@dataclass(frozen=True)
class Timeline:
    """The implementation's queue depth and busy workers, sampled during the run
    (seconds from its start); only our pools expose these gauges."""

    t: list[float] = dataclasses.field(default_factory=list)
    queued: list[int] = dataclasses.field(default_factory=list)
    busy: list[int] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Result:
    """One measurement: one case on one implementation, one repeat. What does not
    apply to an experiment (latency of the leak checker) is None."""

    jobs: int
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    rejected: int = 0
    retried: int = 0
    wall_s: float | None = None
    throughput: float | None = None  # jobs that succeeded / wall seconds
    lat_p50_ms: float | None = None  # latency: intended start → the caller sees the result
    lat_p95_ms: float | None = None
    lat_p99_ms: float | None = None
    lat_max_ms: float | None = None
    queue_wait_ms: float | None = None  # mean: enqueued → taken by a worker (our pools only)
    dispatch_ms: float | None = None  # mean: taken → the function starts (our pools only)
    run_ms: float | None = None  # mean: the function's own time, measured where it ran
    return_ms: float | None = None  # mean: the function ends → the caller's future resolves
    cpu_s: float | None = None  # CPU seconds of the measuring process, its workers and reaped children
    peak_rss_mb: float | None = None  # peak RSS of the measuring process + its workers' RSS at the end
    # Memory per job (-benchmem), tracemalloc in a pass of its own after the timed run
    # (pools.testing.bench.MemoryPerJob): this process only, not worker processes.
    mem_bytes_per_job: float | None = None  # bytes a submitted job holds
    mem_allocs_per_job: float | None = None  # memory blocks a submitted job holds
    mem_peak_bytes_per_job: float | None = None  # the batch's high-water mark, per job
    offered_rate: float | None = None
    achieved_rate: float | None = None
    generator_cpu: float | None = None  # share of a core the load generator used
    generator_bound: bool = False  # the load generator, not the implementation, was the limit
    #: the experiment's own findings: a dataclass of scenarios.experiments
    findings: Any = None

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if dataclasses.is_dataclass(self.findings) and not isinstance(self.findings, type):
            out["findings"] = dataclasses.asdict(self.findings)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"a measurement result has no field {sorted(unknown)[0]!r}")
        return cls(**data)


def sql_type(hint: Any) -> str:
    """The SQLite column type of a field's type (``int | None`` → INTEGER)."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = {a for a in args if a is not type(None)}
    if kinds <= {int, bool}:
        return "INTEGER"
    if kinds <= {float, int}:
        return "REAL"
    return "TEXT"


_HINTS = typing.get_type_hints(Result)
#: (column, SQL type) of every field but the findings, in order
COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (f.name, sql_type(_HINTS[f.name])) for f in dataclasses.fields(Result) if f.name != "findings"
)
METRICS: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
