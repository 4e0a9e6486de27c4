"""Named job types: the workloads that the HTTP service accepts and the scenarios run.

A client never sends code: it names a type and gives its parameters as plain data,
which the type's pydantic model validates (a bad field raises ``InvalidArgument``
naming the field and its constraint; the service answers 422 and shows the model in
``/openapi.json``). Every type has a plain form (thread and process backends) and/or
a coroutine form (asyncio), defined at module top level so that the process backend
can pickle them; the job function takes one argument, the validated data as a dict
(``model.model_dump()``: plain data, cheap to send to a worker process).
:meth:`Registry.job_for` picks the form a pool runs::

    params = jobtypes.validate("sleep", {"ms": 5})
    job = pool.submit(jobtypes.job_for(pool, "sleep"), params)

Built-in types: ``noop``; ``echo`` {value}; ``sleep`` {ms}; ``cpu`` {ms} (pure-Python
work for that much CPU time of the worker's thread); ``fail`` {probability, ms};
``heavy_tail`` {alpha, scale_ms, max_ms} (a Pareto-distributed sleep). The plain
forms watch ``current_context()``: a cancelled or timed-out job ends at once, so on
the thread backend its thread is free again instead of abandoned.

The user's own types come the same way, from a module that defines ``JOBTYPES``, a
list of :class:`JobType`; :func:`load_registry` gathers the built-in ones, those of
the installed packages (entry-point group ``poolbench.jobtypes``, whose value names
such a module) and those of the modules named by ``--jobtypes``::

    class ResizeData(BaseModel):
        width: int = Field(gt=0, le=4096)

    def resize(data: dict) -> dict: ...

    JOBTYPES = [JobType("resize", ResizeData, sync=resize, example={"width": 64})]
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pools import InvalidArgument, NoCurrentJob, current_context
from pools.lowlevel import is_coroutine_function

from .imports import LoadError, import_module

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "JobType",
    "JobTypeError",
    "JobTypeFailure",
    "Registry",
    "data_error",
    "job_for",
    "load_registry",
    "names",
    "validate",
]

MAX_MS = 60_000.0  # no single job may ask for more than a minute
ENTRY_POINT_GROUP = "poolbench.jobtypes"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class JobTypeFailure(RuntimeError):
    """Raised by the ``fail`` job type: the failure it was asked to produce."""


class JobTypeError(LoadError):
    """A job type, or a module of them, is not valid: no model, a model that is not
    a pydantic model, no job function, a name taken twice, a module without
    ``JOBTYPES``. Raised where the types are loaded (``poolbench serve`` and
    ``poolbench loadtest`` at start-up), naming the module, the type and the fix."""


# ---------------------------------------------------------------- parameters


class _Data(BaseModel):
    # Strict: "5" is not 5 ms, true is not a probability. No NaN or infinity.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class NoData(_Data):
    """No parameters."""


class EchoData(_Data):
    value: Any = Field(default=None, description="any JSON value, returned as the result")

    @field_validator("value")
    @classmethod
    def _plain_json(cls, value: Any) -> Any:
        # Python's JSON parser takes NaN and Infinity, which no strict client can read back.
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise ValueError("must be plain JSON: no NaN or Infinity") from None
        return value


class SleepData(_Data):
    ms: float = Field(ge=0, le=MAX_MS, description="milliseconds to sleep")


class CpuData(_Data):
    ms: float = Field(ge=0, le=MAX_MS, description="milliseconds of CPU time of the worker's thread")


class FailData(_Data):
    probability: float = Field(default=1.0, ge=0, le=1, description="chance of failing")
    ms: float = Field(default=0.0, ge=0, le=MAX_MS, description="milliseconds to sleep first")


class HeavyTailData(_Data):
    alpha: float = Field(default=1.5, gt=1, le=10, description="Pareto shape: smaller is heavier")
    scale_ms: float = Field(default=1.0, gt=0, le=MAX_MS, description="the shortest sleep")
    max_ms: float = Field(default=1000.0, gt=0, le=MAX_MS, description="the longest sleep")


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
    """A named job type: ``model`` (a pydantic ``BaseModel`` subclass) validates its
    data; ``sync`` (a plain function, for the thread and process backends) and/or
    ``coro`` (an ``async def``, for asyncio) run it, given the validated data as a
    dict. ``example`` is the data a load test sends when its mix names the type
    alone; ``doc`` one line for ``/openapi.json`` (default: the first line of the
    model's or the function's docstring)."""

    name: str
    model: Any = None
    _: KW_ONLY
    sync: Callable[[dict], Any] | None = None
    coro: Callable[[dict], Any] | None = None
    doc: str = ""
    example: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME.match(name):
            raise JobTypeError(
                f"job type name {name!r} must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter "
                "(':' and ',' separate a load test's mix, 'resize:3,noop:1')"
            )
        model = self.model
        if model is None:
            raise JobTypeError(
                f"job type {name!r} has no data model: give JobType({name!r}, SomeModel, ...), a pydantic BaseModel "
                "subclass (one with no fields if the type takes no data)"
            )
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            got = f"an instance of {type(model).__name__}" if isinstance(model, BaseModel) else repr(model)
            raise JobTypeError(
                f"job type {name!r}: its model must be a pydantic BaseModel subclass (it validates the data and "
                f"appears in /openapi.json), got {got:.80}"
            )
        if self.sync is None and self.coro is None:
            raise JobTypeError(
                f"job type {name!r} has no job function: give sync= (a plain function, for the thread and "
                "process backends) and/or coro= (an async def, for asyncio)"
            )
        if self.sync is not None and (not callable(self.sync) or is_coroutine_function(self.sync)):
            raise JobTypeError(
                f"job type {name!r}: sync= must be a plain function, got {self.sync!r:.80}"
                + ("; pass a coroutine function as coro=" if is_coroutine_function(self.sync) else "")
            )
        if self.coro is not None and not is_coroutine_function(self.coro):
            raise JobTypeError(
                f"job type {name!r}: coro= must be a coroutine function (async def), got {self.coro!r:.80}"
            )
        if self.example is not None:
            try:
                model.model_validate(self.example)
            except ValidationError as e:
                raise JobTypeError(
                    f"job type {name!r}: its example does not fit its model: "
                    + "; ".join(data_error(self, err)[1] for err in e.errors())
                ) from None
        if not self.doc:
            docs = (getattr(f, "__doc__", None) for f in (model, self.sync, self.coro))
            first = next((d.strip().splitlines()[0] for d in docs if d and d.strip()), "")
            object.__setattr__(self, "doc", first)
        object.__setattr__(self, "example", dict(self.example or {}))

    def params(self, data: Any) -> dict[str, Any]:
        """The validated data as the dict the job function takes; ``InvalidArgument``
        naming the field and the constraint."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidArgument(f"field 'data' must be an object, got {type(data).__name__}")
        try:
            return self.model.model_validate(data).model_dump()
        except ValidationError as e:
            raise InvalidArgument("; ".join(data_error(self, err)[1] for err in e.errors())) from None


def data_error(jt: JobType, err: Mapping[str, Any], prefix: str = "") -> tuple[str, str]:
    """(field, message) for one pydantic error in ``jt``'s data, its location
    relative to the data; ``prefix`` goes before the field's name ("data.")."""
    loc = [str(p) for p in err.get("loc", ())]
    field = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "data"
    kind = err.get("type", "")
    fields = ", ".join(jt.model.model_fields) or "none"
    if kind == "missing":
        return field, f"field {field!r} is required"
    if kind == "extra_forbidden":
        return field, f"job type {jt.name!r} takes no field {field!r}; its fields are: {fields}"
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return field, f"field {field!r} must be an object with the fields of job type {jt.name!r} ({fields})"
    msg = err.get("msg", "is invalid").removeprefix("Value error, ")
    text = repr(err.get("input"))
    return field, f"field {field!r}: {msg[:1].lower() + msg[1:]}, got {text if len(text) <= 60 else text[:57] + '...'}"


def _import(path: str) -> ModuleType:
    try:
        return import_module(path, what="job-type module")
    except LoadError as e:
        if isinstance(e.__cause__, JobTypeError):  # a JobType(...) in it is wrong: say that alone
            raise JobTypeError(f"job-type module {path!r}: {e.__cause__}") from e.__cause__
        raise


class Registry(Mapping[str, JobType]):
    """Job types by name, each with where it came from (named when two sources
    define one name)."""

    def __init__(self, types: Iterable[JobType] = (), *, source: str = "") -> None:
        self._types: dict[str, JobType] = {}
        self._sources: dict[str, str] = {}
        self.modules: list[str] = []  # modules whose types were added, in order
        if types:
            self.add(types, source=source)

    def __getitem__(self, name: str) -> JobType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        return f"<Registry {', '.join(self._types)}>"

    def source(self, name: str) -> str:
        return self._sources[name]

    def copy(self) -> Registry:
        out = Registry()
        out._types, out._sources, out.modules = dict(self._types), dict(self._sources), list(self.modules)
        return out

    def add(self, types: Iterable[JobType], *, source: str) -> None:
        """Add ``types``; ``JobTypeError`` for a value that is not a JobType or a name
        already taken (both sources named). Nothing is added if any is wrong."""
        if isinstance(types, (str, bytes, Mapping)) or not isinstance(types, Iterable):
            raise JobTypeError(f"{source}: JOBTYPES must be a list of JobType values, got {type(types).__name__}")
        new: dict[str, JobType] = {}
        for jt in types:
            if not isinstance(jt, JobType):
                raise JobTypeError(
                    f"{source}: JOBTYPES must hold JobType values (scenarios.jobtypes.JobType), got {jt!r:.80}"
                )
            taken = self._sources.get(jt.name) if jt.name in self._types else source if jt.name in new else None
            if taken is not None and self._types.get(jt.name) is not jt:
                raise JobTypeError(
                    f"job type {jt.name!r} is defined twice: by {taken} and by {source}; rename one of them"
                )
            new[jt.name] = jt
        for name, jt in new.items():
            self._types[name] = jt
            self._sources.setdefault(name, source)

    def add_module(self, module: ModuleType | str, *, source: str | None = None) -> None:
        """Add the ``JOBTYPES`` of a module (or a module path, imported here)."""
        if isinstance(module, str):
            module = _import(module)
        if module.__name__ in self.modules:
            return  # named by --jobtypes and by an installed package's entry point alike
        where = source or f"module {module.__name__!r}"
        types = getattr(module, "JOBTYPES", None)
        if types is None:
            raise JobTypeError(
                f"job-type {where} defines no JOBTYPES: add JOBTYPES = [JobType('name', YourModel, sync=your_function)]"
            )
        self.add(types, source=where)
        self.modules.append(module.__name__)

    def add_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Add the types of every installed package's entry point in ``group``: its
        value names a module that defines ``JOBTYPES``."""
        for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: (e.value, e.name)):
            dist = getattr(ep.dist, "name", None) or "an installed package"
            where = f"entry point {ep.name!r} = {ep.value!r} (group {group!r}, from {dist})"
            if ep.attr:
                raise JobTypeError(
                    f"{where}: the value must name a module that defines JOBTYPES, not 'module:attribute'"
                )
            try:
                module = _import(ep.module)
            except LoadError as e:
                raise JobTypeError(f"{where}: {e}") from e.__cause__
            self.add_module(module, source=where)

    def get(self, name: Any, default: Any = None) -> Any:
        try:
            return self._types.get(name, default)
        except TypeError:  # unhashable
            return default

    def get_type(self, name: Any) -> JobType:
        jt = self.get(name)
        if jt is None:
            raise InvalidArgument(f"unknown job type {name!r}; valid types are: {', '.join(self._types)}")
        return jt

    def validate(self, name: str, data: Any = None) -> dict[str, Any]:
        """Check the parameters of job type ``name``; return them normalized."""
        return self.get_type(name).params(data)

    def job_for(self, pool_or_runs: Any, name: str) -> Callable[[dict], Any]:
        """The form of job type ``name`` that a pool (or its ``capabilities.runs``
        value) takes; ``JobTypeError`` if the type has none."""
        jt = self.get_type(name)
        caps = getattr(pool_or_runs, "capabilities", None)
        runs = pool_or_runs if caps is None else caps.runs
        fn = jt.coro if runs == "coroutines" else jt.sync
        if fn is None:
            if runs == "coroutines":
                form, fix = (
                    "coroutine form (coro=, an async def)",
                    "a backend that runs plain functions (thread, process)",
                )
            else:
                form, fix = "plain form (sync=, a plain function)", "a backend that runs coroutines (asyncio)"
            raise JobTypeError(
                f"job type {name!r} ({self._sources[name]}) has no {form}, which a pool that runs {runs} needs: "
                f"add one, or use {fix}"
            )
        return fn


BUILTIN = Registry(
    (
        JobType("noop", NoData, sync=noop, coro=anoop, doc="does nothing: pure overhead"),
        JobType("echo", EchoData, sync=echo, coro=aecho, doc="returns data.value", example={"value": "hello"}),
        JobType(
            "sleep",
            SleepData,
            sync=sleep,
            coro=asleep,
            doc="sleeps data.ms milliseconds (I/O-like)",
            example={"ms": 10},
        ),
        JobType(
            "cpu", CpuData, sync=cpu, coro=acpu, doc="pure-Python work for data.ms ms of CPU time", example={"ms": 2}
        ),
        JobType(
            "fail",
            FailData,
            sync=fail,
            coro=afail,
            doc="after data.ms, fails with data.probability (default 1)",
            example={"probability": 0.5},
        ),
        JobType(
            "heavy_tail",
            HeavyTailData,
            sync=heavy_tail,
            coro=aheavy_tail,
            doc="sleeps a Pareto(data.alpha) duration, at least data.scale_ms, at most data.max_ms",
            example={"alpha": 1.5, "scale_ms": 1, "max_ms": 200},
        ),
    ),
    source="the built-in types (scenarios.jobtypes)",
)
#: The built-in types (the scenarios run these).
REGISTRY = BUILTIN


def load_registry(modules: Sequence[str] = (), *, entry_points: bool = True) -> Registry:
    """The built-in types, those of the installed packages (entry-point group
    ``poolbench.jobtypes``) and those of ``modules`` (import paths, each defining
    ``JOBTYPES``); ``LoadError`` (``JobTypeError``) naming what is wrong."""
    registry = BUILTIN.copy()
    if entry_points:
        registry.add_entry_points()
    for path in modules:
        registry.add_module(path)
    return registry


def names() -> tuple[str, ...]:
    return tuple(BUILTIN)


def validate(name: str, data: Any = None) -> dict[str, Any]:
    """Check the parameters of built-in job type ``name``; return them normalized."""
    return BUILTIN.validate(name, data)


def job_for(pool_or_runs: Any, name: str) -> Callable[[dict], Any]:
    """The form of built-in job type ``name`` that a pool (or its ``capabilities.runs`` value) takes."""
    return BUILTIN.job_for(pool_or_runs, name)
