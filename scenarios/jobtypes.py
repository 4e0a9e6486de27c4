"""Named job types: the workloads that the HTTP service accepts and the scenarios run.

A client never sends code: it names a type from this registry and gives its
parameters as plain data, which :func:`validate` checks (a bad field raises
``InvalidArgument`` naming the field and its constraint). Every type has a
plain form (thread and process backends) and a coroutine form (asyncio), both
defined at module top level so that the process backend can pickle them;
:func:`job_for` picks the one a pool runs::

    params = jobtypes.validate("sleep", {"ms": 5})
    job = pool.submit(jobtypes.job_for(pool, "sleep"), params)

Types: ``noop``; ``echo`` {value}; ``sleep`` {ms}; ``cpu`` {ms} (pure-Python work
for that much CPU time of the worker's thread); ``fail`` {probability, ms};
``heavy_tail`` {alpha, scale_ms, max_ms} (a Pareto-distributed sleep). The plain
forms watch ``current_context()``: a cancelled or timed-out job ends at once, so
on the thread backend its thread is free again instead of abandoned.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pools import InvalidArgument, NoCurrentJob, current_context

__all__ = ["REGISTRY", "JobType", "JobTypeFailure", "job_for", "names", "validate"]

MAX_MS = 60_000.0  # no single job may ask for more than a minute


class JobTypeFailure(RuntimeError):
    """Raised by the ``fail`` job type: the failure it was asked to produce."""


# ---------------------------------------------------------------- parameters


def _number(data: dict, name: str, default: float | None, lo: float, hi: float, *, lo_open: bool = False) -> float:
    value = data.get(name, default)
    if value is None:
        raise InvalidArgument(f"field {name!r} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidArgument(f"field {name!r} must be a number, got {value!r}")
    ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        left = "(" if lo_open else "["
        raise InvalidArgument(f"field {name!r} must be in {left}{lo}, {hi}], got {value!r}")
    return float(value)


def _no_extra(data: dict, allowed: tuple[str, ...], type_name: str) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise InvalidArgument(
            f"job type {type_name!r} takes no field {extra[0]!r}; its fields are: {', '.join(allowed) or 'none'}"
        )


def _v_noop(data: dict) -> dict:
    _no_extra(data, (), "noop")
    return {}


def _v_echo(data: dict) -> dict:
    _no_extra(data, ("value",), "echo")
    return {"value": data.get("value")}


def _v_ms(type_name: str) -> Callable[[dict], dict]:
    def check(data: dict) -> dict:
        _no_extra(data, ("ms",), type_name)
        return {"ms": _number(data, "ms", None, 0, MAX_MS)}

    return check


def _v_fail(data: dict) -> dict:
    _no_extra(data, ("probability", "ms"), "fail")
    return {"probability": _number(data, "probability", 1.0, 0, 1), "ms": _number(data, "ms", 0.0, 0, MAX_MS)}


def _v_heavy_tail(data: dict) -> dict:
    _no_extra(data, ("alpha", "scale_ms", "max_ms"), "heavy_tail")
    return {
        "alpha": _number(data, "alpha", 1.5, 1.0, 10.0, lo_open=True),
        "scale_ms": _number(data, "scale_ms", 1.0, 0, MAX_MS, lo_open=True),
        "max_ms": _number(data, "max_ms", 1000.0, 0, MAX_MS, lo_open=True),
    }


# ---------------------------------------------------------------- the jobs


def noop(params: dict) -> None:
    return None


async def anoop(params: dict) -> None:
    return None


def echo(params: dict) -> Any:
    return params.get("value")


async def aecho(params: dict) -> Any:
    return params.get("value")


def _pause(seconds: float) -> None:
    """Sleep, but end early when the job is cancelled or times out, so that a thread
    job gives its thread back at once (a thread cannot be stopped from outside)."""
    try:
        ctx = current_context()
    except NoCurrentJob:  # called directly, outside a pool
        time.sleep(seconds)
        return
    ctx.wait(seconds)


def sleep(params: dict) -> float:
    _pause(params["ms"] / 1000)
    return params["ms"]


async def asleep(params: dict) -> float:
    await asyncio.sleep(params["ms"] / 1000)
    return params["ms"]


def cpu(params: dict) -> int:
    """Spin in pure Python until this thread has used ``ms`` of CPU time: under the
    GIL, threads share one core's worth; processes get a core each."""
    end = time.thread_time() + params["ms"] / 1000
    try:
        stopped = current_context().cancelled
    except NoCurrentJob:
        stopped = bool  # never true: bool() is False
    n = 0
    while time.thread_time() < end and not stopped():
        for _ in range(200):
            n += 1
    return n


async def acpu(params: dict) -> int:
    return cpu(params)  # CPU work on the loop blocks it, by nature: that is the point


def fail(params: dict) -> str:
    if params["ms"]:
        _pause(params["ms"] / 1000)
    if random.random() < params["probability"]:
        raise JobTypeFailure(f"failed on purpose (probability {params['probability']})")
    return "ok"


async def afail(params: dict) -> str:
    if params["ms"]:
        await asyncio.sleep(params["ms"] / 1000)
    if random.random() < params["probability"]:
        raise JobTypeFailure(f"failed on purpose (probability {params['probability']})")
    return "ok"


def pareto_ms(alpha: float, scale_ms: float, max_ms: float, rng: random.Random | None = None) -> float:
    """A Pareto(alpha) duration with minimum ``scale_ms``, capped at ``max_ms``."""
    draw = (rng or random).paretovariate(alpha)
    return min(max_ms, scale_ms * draw)


def heavy_tail(params: dict) -> float:
    ms = pareto_ms(params["alpha"], params["scale_ms"], params["max_ms"])
    _pause(ms / 1000)
    return ms


async def aheavy_tail(params: dict) -> float:
    ms = pareto_ms(params["alpha"], params["scale_ms"], params["max_ms"])
    await asyncio.sleep(ms / 1000)
    return ms


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class JobType:
    name: str
    sync: Callable[[dict], Any]
    coro: Callable[[dict], Any]
    check: Callable[[dict], dict]
    doc: str


REGISTRY: dict[str, JobType] = {
    t.name: t
    for t in (
        JobType("noop", noop, anoop, _v_noop, "does nothing: pure overhead"),
        JobType("echo", echo, aecho, _v_echo, "returns data.value"),
        JobType("sleep", sleep, asleep, _v_ms("sleep"), "sleeps data.ms milliseconds (I/O-like)"),
        JobType("cpu", cpu, acpu, _v_ms("cpu"), "pure-Python work for data.ms ms of CPU time"),
        JobType("fail", fail, afail, _v_fail, "after data.ms, fails with data.probability (default 1)"),
        JobType(
            "heavy_tail",
            heavy_tail,
            aheavy_tail,
            _v_heavy_tail,
            "sleeps a Pareto(data.alpha) duration, at least data.scale_ms, at most data.max_ms",
        ),
    )
}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def _get(name: Any) -> JobType:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise InvalidArgument(f"unknown job type {name!r}; valid types are: {', '.join(REGISTRY)}") from None


def validate(name: str, data: Any = None) -> dict:
    """Check the parameters of job type ``name``; return them normalized."""
    jt = _get(name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"field 'data' must be an object, got {type(data).__name__}")
    return jt.check(data)


def job_for(pool_or_runs: Any, name: str) -> Callable[[dict], Any]:
    """The form of job type ``name`` that a pool (or its ``capabilities.runs`` value) takes."""
    jt = _get(name)
    caps = getattr(pool_or_runs, "capabilities", None)
    runs = pool_or_runs if caps is None else caps.runs
    return jt.coro if runs == "coroutines" else jt.sync
