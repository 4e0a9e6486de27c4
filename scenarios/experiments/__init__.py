"""Experiments: what one measurement does. Each is one unit in one module — its
driver ``run(case, implementation, seed) -> Result``, the frozen dataclass of its
findings, which implementations it applies to, and the note the terminal summary
prints from its findings; the report's answer for it is in :mod:`reports.questions`.
A scenario names its experiment (``experiment = "cancel_latency"``; default ``load``).

- ``load``: the load generator — the job mix at the scenario's arrivals, on any implementation
- ``cancel_latency``: cancel vs timeout, from cancel() or the deadline to the caller seeing the end
- ``primitives``: Python's answers to Go's Mutex, RWMutex, WaitGroup and atomic, in operations/s
- ``leaks``: what the leak checker catches when a job or a pool is left running
- ``racy_pool``: the conformance kit run on a deliberately buggy backend
- ``memory``: the memory of jobs left waiting behind a busy worker

The modules are imported only when a measurement or a report needs one: reading a
scenario names experiments without importing their drivers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..implementations import Implementation
    from ..result import Result
    from ..spec import Case

__all__ = ["MODULES", "Experiment", "decode_findings", "get", "names", "ours_only"]

#: experiment name → its module (relative to this package)
MODULES = {
    "load": ".load",
    "cancel_latency": ".cancel",
    "primitives": ".primitives",
    "leaks": ".leaks",
    "racy_pool": ".racy",
    "memory": ".memory",
}


def _everywhere(_impl: Implementation) -> str | None:
    return None


@dataclass(frozen=True)
class Experiment:
    name: str
    run: Callable[[Case, Implementation, int], Result]
    #: the frozen dataclass of Result.findings
    findings: type
    #: why it does not apply to an implementation, or None when it does
    applies: Callable[[Implementation], str | None] = _everywhere
    #: the terminal summary's note on one measurement's findings ("" for none)
    note: Callable[[Any], str] = lambda _findings: ""


def names() -> tuple[str, ...]:
    return tuple(MODULES)


def get(name: str) -> Experiment:
    if name not in MODULES:
        raise KeyError(f"unknown experiment {name!r}; valid: {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name], __name__).EXPERIMENT


def decode_findings(name: str, data: Any) -> Any:
    """The findings of experiment ``name`` from their JSON, as its dataclass (fields it
    does not know are left out, fields it lacks take their defaults: runs made by an
    older version still read); None for none."""
    if not isinstance(data, dict):
        return None
    from pydantic import TypeAdapter

    return TypeAdapter(get(name).findings).validate_python(data)


def ours_only(what: str) -> Callable[[Implementation], str | None]:
    """``applies`` of an experiment that drives our pools' own features."""

    def applies(impl: Implementation) -> str | None:
        return None if impl.kind == "ours" else f"{what}: it applies to our pools only"

    return applies
