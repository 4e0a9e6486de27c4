"""A workload: the user's function by import path, its arguments, its weight in a mix.

What a scenario names is a :class:`WorkloadSpec`, plain data (stored with every
measurement, sent to each measurement's fresh interpreter); what it names is made
real by :meth:`WorkloadSpec.resolve`, in whichever process runs it::

    spec = WorkloadSpec(fn="mypkg.jobs:resize_image", args="mypkg.jobs:sample_args")
    work = spec.resolve(limit=1000)     # imports mypkg.jobs, calls sample_args()
    fn = work.form("callables")         # the plain form; "coroutines": the coroutine form

The function (``fn``) is a plain function, a coroutine function, or a pair of both
forms, so that every implementation can run it: a tuple of the two (either order), an
object with ``sync`` and ``coro`` attributes, or a second import path in ``coro``.
``type`` and ``params`` name a built-in job type of :mod:`scenarios.jobtypes` instead.

The arguments (``args``) come from:

- nothing: the function takes none;
- ``"module:attr"``: a callable, called with no argument, that returns or yields them;
- a file path: JSON lines, one JSON array of arguments per line;
- a list: the arguments themselves (a TOML array, or JSON on the command line).

Each item is one job's arguments: a tuple or a list is the argument tuple (JSON has no
tuples), any other value the one argument. The jobs of a workload take its items in
order, round and round. The source is read anew in each measurement's process, after
``random.seed(seed)``: a source that draws random values gives every implementation
the same arguments in a repeat. Every failure is a :class:`WorkloadError` that names
the import path or file, and the constraint.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pools.lowlevel import is_coroutine_function

from . import jobtypes
from .imports import LoadError, load_object

__all__ = ["IMPORT_PATH", "Workload", "WorkloadError", "WorkloadSpec", "draw_args", "resolve_mix"]

#: "module.path:attribute", the notation of entry points
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

RUNS = ("callables", "coroutines")


class WorkloadError(LoadError):
    """A workload cannot be used: its function or argument source does not import,
    is not callable, raises, or yields nothing usable. The message names the import
    path (or file) and the constraint."""


class WorkloadSpec(BaseModel):
    """One workload of a scenario's mix, as the scenario file or the command line gives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: import path of the function: a plain function, a coroutine function, or a pair of both
    fn: str | None = None
    #: import path of the coroutine form, when ``fn`` names the plain one
    coro: str | None = None
    #: a built-in job type (scenarios.jobtypes) instead of a function
    type: str | None = None
    #: the built-in type's parameters
    params: dict[str, Any] = Field(default_factory=dict)
    #: the argument source: an import path, a JSON-lines file, or the list of arguments
    args: str | list[Any] | None = None
    #: share of the jobs, relative to the other workloads of the mix
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)
    #: the name shown in tables (default: the function's name, or the type)
    name: str | None = Field(None, min_length=1, max_length=80)

    @field_validator("fn", "coro")
    @classmethod
    def _import_path(cls, value: str | None) -> str | None:
        if value is not None and not IMPORT_PATH.match(value):
            raise ValueError(f"must be an import path 'module:function' (e.g. mypkg.jobs:resize_image), got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> WorkloadSpec:
        if self.type is not None:
            if self.fn or self.coro:
                raise ValueError("give either fn (your function) or type (a built-in job type), not both")
            if self.args is not None:
                raise ValueError(f"a built-in job type takes params, not args (type {self.type!r})")
            jobtypes.validate(self.type, self.params)  # names the field and its constraint
        else:
            if not (self.fn or self.coro):
                raise ValueError(
                    "give fn, an import path 'module:function', or type, a built-in job type "
                    f"({', '.join(jobtypes.names())})"
                )
            if self.params:
                raise ValueError("params go with a built-in type; a function takes args")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.type is not None:
            return self.type
        return (self.fn or self.coro or "").rpartition(":")[2]

    @property
    def known_ms(self) -> float | None:
        """The mean duration of one job when its parameters say it (built-in sleep-like types)."""
        if self.type is None:
            return None
        p = jobtypes.validate(self.type, self.params)
        if self.type == "heavy_tail":  # Pareto mean: scale * alpha / (alpha - 1), before the cap
            return min(p["max_ms"], p["scale_ms"] * p["alpha"] / (p["alpha"] - 1))
        return float(p.get("ms", 0.0))

    def resolve(self, *, limit: int, seed: int | None = None) -> Workload:
        """Import the function and read at most ``limit`` argument tuples."""
        if self.type is not None:
            params = jobtypes.validate(self.type, self.params)
            forms = {runs: _jobtype_form(self.type, runs) for runs in RUNS}
            return Workload(self.label, forms.get("callables"), forms.get("coroutines"), [(params,)], self.type)
        sync, coro = _forms(self.fn, self.coro)
        if seed is not None:
            random.seed(seed)
        return Workload(self.label, sync, coro, draw_args(self.args, limit), self.fn or self.coro or "")


def _jobtype_form(name: str, runs: str) -> Callable[..., Any] | None:
    try:
        return jobtypes.job_for(runs, name)
    except LoadError:  # a type with one form only
        return None


def _forms(fn_path: str | None, coro_path: str | None) -> tuple[Callable[..., Any] | None, Callable[..., Any] | None]:
    """(plain form, coroutine form) of what ``fn`` (and ``coro``) name."""
    sync = coro = None
    if fn_path is not None:
        obj = load_object(fn_path, what="workload")
        if isinstance(obj, (tuple, list)):
            if len(obj) != 2 or not all(callable(f) for f in obj):
                raise WorkloadError(
                    f"workload {fn_path!r} is a {type(obj).__name__} of {len(obj)}: a pair must hold two "
                    "functions, the plain form and the coroutine form"
                )
            pair = list(obj)
        elif hasattr(obj, "sync") and hasattr(obj, "coro"):
            pair = [f for f in (obj.sync, obj.coro) if f is not None]
        elif callable(obj):
            pair = [obj]
        else:
            raise WorkloadError(
                f"workload {fn_path!r} must be callable (a function, a coroutine function, or a pair of both), "
                f"got {type(obj).__name__} {obj!r:.60}"
            )
        for f in pair:
            if is_coroutine_function(f):
                if coro is not None:
                    raise WorkloadError(f"workload {fn_path!r}: a pair needs one plain and one coroutine function")
                coro = f
            else:
                if sync is not None:
                    raise WorkloadError(f"workload {fn_path!r}: a pair needs one plain and one coroutine function")
                sync = f
    if coro_path is not None:
        obj = load_object(coro_path, what="workload coroutine form", require=callable, constraint="callable")
        if not is_coroutine_function(obj):
            raise WorkloadError(f"workload coroutine form {coro_path!r} must be a coroutine function (async def)")
        if coro is not None:
            raise WorkloadError(
                f"workload {fn_path!r} has a coroutine form already; coro {coro_path!r} is one too many"
            )
        coro = obj
    return sync, coro


def _as_args(item: Any) -> tuple:
    return tuple(item) if isinstance(item, (tuple, list)) else (item,)


def draw_args(source: str | list[Any] | None, limit: int) -> list[tuple]:
    """At most ``limit`` argument tuples from ``source`` (see the module's docstring)."""
    if source is None:
        return [()]
    if isinstance(source, list):
        items: Iterable[Any] = source
        where = "the argument list"
    elif IMPORT_PATH.match(source):
        make = load_object(
            source, what="argument source", require=callable, constraint="callable (called with no argument)"
        )
        where = f"argument source {source!r}"
        try:
            items = make()
        except Exception as e:  # the user's code: whatever it raises is reported with its path
            raise WorkloadError(f"{where} raised {type(e).__name__}: {e}") from e
        if not isinstance(items, Iterable) or isinstance(items, (str, bytes, dict)):
            raise WorkloadError(
                f"{where} must return or yield argument tuples (an iterable), got {type(items).__name__} {items!r:.60}"
            )
    else:
        return _jsonl(source, limit)
    out: list[tuple] = []
    try:
        for item in itertools.islice(items, limit):
            out.append(_as_args(item))
    except Exception as e:  # a generator that raises part-way
        raise WorkloadError(f"{where} raised {type(e).__name__} after {len(out)} items: {e}") from e
    if not out:
        raise WorkloadError(f"{where} gave no arguments: it must give at least one argument tuple")
    return out


def _jsonl(path: str, limit: int) -> list[tuple]:
    where = f"argument file {path!r}"
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, lines read lazily
    except FileNotFoundError:
        raise WorkloadError(
            f"{where} does not exist (in {os.getcwd()}); args is a JSON-lines file, an import path "
            "'module:function', or a list"
        ) from None
    except OSError as e:
        raise WorkloadError(f"{where} cannot be read: {e}") from e
    out: list[tuple] = []
    with f:
        for lineno, line in enumerate(f, 1):
            if len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                out.append(_as_args(json.loads(line)))
            except json.JSONDecodeError as e:
                raise WorkloadError(
                    f"{where}, line {lineno}: not JSON ({e.msg}); each line is a JSON array of arguments"
                ) from None
    if not out:
        raise WorkloadError(f"{where} holds no arguments: one JSON array of arguments per line")
    return out


@dataclass(frozen=True)
class Workload:
    """A workload made real: its forms and its arguments."""

    label: str
    sync: Callable[..., Any] | None
    coro: Callable[..., Any] | None
    args: list[tuple]
    origin: str  # the import path (or the built-in type) it came from

    def form(self, runs: str) -> Callable[..., Any] | None:
        """The form an implementation that runs ``runs`` ("callables", "coroutines") takes."""
        return self.coro if runs == "coroutines" else self.sync

    def unfit(self, runs: str, *, pickles: bool, implementation: str) -> str | None:
        """Why ``implementation`` cannot run this workload, or None when it can."""
        fn = self.form(runs)
        if fn is None:
            have = "a coroutine function" if runs == "callables" else "a plain function"
            need = "coroutine functions" if runs == "coroutines" else "plain functions"
            return (
                f"{implementation} runs {need}, and {self.origin} is {have}: give both forms "
                "(a pair (fn, async_fn), or coro = 'module:async_fn') to run it there"
            )
        if pickles:
            for what, obj in (("the function", fn), ("its arguments", self.args[:8])):
                try:
                    pickle.dumps(obj)
                except Exception as e:  # noqa: BLE001 - any pickling failure is the reason, reported
                    why = re.sub(r" at 0x[0-9a-f]+", "", str(e))
                    return (
                        f"{implementation} sends work to other processes by pickle, and {what} of {self.origin} "
                        f"cannot be pickled ({type(e).__name__}: {why}); define functions with def at module top level"
                    )
        return None


def resolve_mix(specs: Iterable[WorkloadSpec], *, limit: int, seed: int | None = None) -> list[Workload]:
    return [spec.resolve(limit=limit, seed=seed) for spec in specs]
