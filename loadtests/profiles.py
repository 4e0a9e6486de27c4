"""What a load test sends, and how many users send it when: plain data and
arithmetic, shared by the locustfile (in locust's processes) and ``poolbench
loadtest`` (in its own). Imports neither locust nor the pools.

The locust processes receive everything through environment variables (``ENV_*``)
set by ``poolbench loadtest``, so that a master and its workers on several machines
can be given the same values by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "COSTED",
    "DEFAULT_MIX",
    "SHAPES",
    "MixEntry",
    "estimate_capacity",
    "mean_ms",
    "parse_mix",
    "users_at",
]

ENV_MIX = "POOLBENCH_MIX"  # JSON list of MixEntry dicts
ENV_SHAPE = "POOLBENCH_SHAPE"
ENV_USERS = "POOLBENCH_USERS"
ENV_SPAWN_RATE = "POOLBENCH_SPAWN_RATE"
ENV_DURATION = "POOLBENCH_DURATION"  # seconds
ENV_USER_RATE = "POOLBENCH_USER_RATE"  # iterations per second per user; 0: no wait
ENV_TOKEN = "POOLBENCH_TOKEN"

SHAPES = ("steady", "ramp", "spike", "overload")

DEFAULT_MIX = "noop:4,echo:1,sleep:3,cpu:1,fail:1"


@dataclass(frozen=True)
class MixEntry:
    type: str
    weight: float = 1.0
    data: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "data": self.data}
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.retries:
            out["retries"] = self.retries
        return out


def parse_mix(spec: str, examples: Mapping[str, Mapping[str, Any]]) -> list[MixEntry]:
    """``"noop:4,sleep:3"`` (types with weights, each sent with its example data), or
    a JSON list of ``{"type", "weight", "data", "timeout", "retries"}`` (inline, or
    ``@file``). ``examples`` maps every known job type to its example data (the
    registry's, see ``scenarios.jobtypes``): a name outside it is an error that lists them."""
    spec = spec.strip()
    if spec.startswith("@"):
        with open(spec[1:]) as f:
            spec = f.read().strip()

    def known(name: Any) -> dict[str, Any]:
        if not isinstance(name, str) or name not in examples:
            raise ValueError(
                f"unknown job type {name!r} in the mix; the types are: {', '.join(examples)} "
                "(a type of your own: --jobtypes MODULE)"
            )
        return dict(examples[name])

    entries = []
    if spec.startswith("["):
        raw = json.loads(spec)
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise ValueError("a JSON mix is a list of objects {type, weight, data, timeout, retries}")
        for e in raw:
            extra = sorted(set(e) - set(MixEntry.__dataclass_fields__))
            if extra:
                raise ValueError(
                    f"mix entry {e!r:.80} has no field {extra[0]!r}; the fields are: type, weight, data, timeout, retries"
                )
            entries.append(MixEntry(**{"data": known(e.get("type")), **e}))
    else:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, weight = item.partition(":")
            data = known(name)
            try:
                w = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"weight of {name!r} must be a number, got {weight!r}") from None
            entries.append(MixEntry(name, w, data))
    if not entries:
        raise ValueError("the mix is empty")
    for e in entries:
        if (
            isinstance(e.weight, bool)
            or not isinstance(e.weight, (int, float))
            or not (e.weight > 0 and math.isfinite(e.weight))
        ):
            raise ValueError(f"weight of {e.type!r} must be a number > 0, got {e.weight!r}")
    return entries


def mix_to_env(entries: list[MixEntry]) -> str:
    return json.dumps([asdict(e) for e in entries])


def mix_from_env(text: str) -> list[MixEntry]:
    return [MixEntry(**e) for e in json.loads(text)]


# ---------------------------------------------------------------- capacity


def _heavy_tail_mean(alpha: float, scale: float, cap: float) -> float:
    """E[min(X, cap)] for X ~ Pareto(alpha) with minimum ``scale``."""
    if cap <= scale:
        return cap
    tail = (scale / cap) ** alpha
    if alpha == 1:
        return scale * (1 + math.log(cap / scale))
    return scale * alpha / (alpha - 1) * (1 - (scale / cap) ** (alpha - 1)) + cap * tail


#: The job types whose cost :func:`mean_ms` knows (the built-in ones).
COSTED = ("noop", "echo", "sleep", "cpu", "fail", "heavy_tail")


def mean_ms(entry: MixEntry) -> tuple[float, float]:
    """(wall ms, CPU ms) one job of ``entry`` holds a worker for, roughly."""
    d = entry.data
    overhead = 0.05
    if entry.type == "sleep":
        wall, cpu = float(d.get("ms", 0)), 0.0
    elif entry.type == "cpu":
        wall = cpu = float(d.get("ms", 0))
    elif entry.type == "fail":
        wall, cpu = float(d.get("ms", 0)), 0.0
    elif entry.type == "heavy_tail":
        wall = _heavy_tail_mean(float(d.get("alpha", 1.5)), float(d.get("scale_ms", 1)), float(d.get("max_ms", 1000)))
        cpu = 0.0
    else:
        wall = cpu = 0.0
    if entry.timeout is not None:
        wall, cpu = min(wall, entry.timeout * 1000), min(cpu, entry.timeout * 1000)
    return wall + overhead, cpu + overhead


def estimate_capacity(entries: list[MixEntry], backend: str, workers: int, cpus: int) -> float:
    """Jobs per second the pool could finish with this mix: ``workers`` jobs at a
    time, and CPU work limited to one core (thread, asyncio: the GIL, the loop) or to
    ``min(workers, cpus)`` cores (process). HTTP costs are not counted, nor the work
    of a type outside ``COSTED`` (a user's type: its cost is unknown here)."""
    total = sum(e.weight for e in entries)
    wall = sum(e.weight * mean_ms(e)[0] for e in entries) / total
    cpu = sum(e.weight * mean_ms(e)[1] for e in entries) / total
    cores = min(workers, cpus) if backend == "process" else 1
    return min(workers * 1000 / wall, cores * 1000 / cpu)


# ---------------------------------------------------------------- shapes


def users_at(shape: str, t: float, users: int, duration: float) -> int | None:
    """Users wanted ``t`` seconds into a run of ``shape``; None once it is over.

    steady, overload: all ``users`` for the whole run (overload differs by pacing:
    ``poolbench loadtest`` sets the users' rate to twice the pool's capacity).
    ramp: from 1 to ``users``, one step a second, over the run.
    spike: a fifth of the users, then all of them for the middle fifth of the run,
    then a fifth again.
    """
    if t >= duration:
        return None
    if shape in ("steady", "overload"):
        return users
    if shape == "ramp":
        return max(1, min(users, math.ceil(users * (math.floor(t) + 1) / max(1.0, duration))))
    if shape == "spike":
        base = max(1, users // 5)
        return users if 0.4 * duration <= t < 0.6 * duration else base
    raise ValueError(f"unknown shape {shape!r}; valid shapes are: {', '.join(SHAPES)}")
