"""Scenarios: what to run, how jobs arrive, and on what pool options — one format,
TOML, for the built-in scenarios (``scenarios/builtin/``, shipped with the package)
and the user's own files, read by one loader (:func:`load_file`)::

    name = "resize"
    jobs = 400
    workers = 4
    arrival = "poisson"        # closed | serial | map | fixed | poisson | bursty
    rate = 200                 # open loop: jobs/s, or `load`: a multiple of capacity

    [[workload]]
    fn = "mypkg.jobs:resize_image"
    args = "mypkg.jobs:sample_args"
    weight = 3

    [sweep]
    workers = [1, 2, 4, 8]

A :class:`Scenario` names no implementation unless it must (``implementations``): the
runner runs it unchanged on each. ``sweep`` expands it into one :class:`Case` per value
of one option (workers, queue size, overflow, offered load or rate, the jobs' ``ms``,
the job count). ``quick`` holds the changes of a quick run.

Arrivals: ``closed`` submits as fast as the implementation accepts; ``serial`` one job
at a time, each after the last one's result (the round trip); ``map`` hands every job
to the implementation's ``map`` at once; ``fixed``, ``poisson`` and ``bursty`` are open
loops at ``rate`` jobs/s or at ``load`` times the capacity (``workers / mean job
duration``, so that "2× what the pool can serve" means the same on every machine; for
the user's functions the runner measures the mean duration first).

A bad file is a :class:`ScenarioError` naming the file, the field and the constraint.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from . import experiments
from .imports import LoadError
from .workload import IMPORT_PATH, WorkloadSpec

__all__ = [
    "ARRIVALS",
    "SWEEPABLE",
    "Case",
    "ImplSpec",
    "Priority",
    "Scenario",
    "ScenarioError",
    "Target",
    "builtin",
    "cases",
    "load_file",
    "names",
    "resolve",
]

ARRIVALS = ("closed", "serial", "map", "fixed", "poisson", "bursty")
OPEN = ("fixed", "poisson", "bursty")
#: the options a sweep can vary; "ms" is the duration parameter of built-in job types
SWEEPABLE = ("workers", "queue_size", "overflow", "load", "rate", "ms", "jobs")
BLOCK_WAIT = 0.01  # sweep value overflow="block-wait": block, with wait= this many seconds


class ScenarioError(LoadError):
    """A scenario file or name is not valid: unreadable, not TOML, an unknown field, a
    value outside its constraint. The message names the file, the field and the constraint."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Priority(_Strict):
    """A share of the jobs submitted with one priority."""

    weight: float = Field(gt=0, allow_inf_nan=False)
    priority: int


class ImplSpec(_Strict):
    """An implementation as a scenario or the command line names it: a registered
    name (``thread``, ``ThreadPoolExecutor``, ...) or an import path of an Executor
    factory (``mypkg:make_executor``), with our backends' own options."""

    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(default=None, min_length=1, max_length=80)

    @classmethod
    def parse(cls, text: str) -> ImplSpec:
        """``NAME`` or ``NAME[key=value,...]`` (the command line's ``--impl``): values are
        read as JSON where they can be (``workers=2``, ``processes=true``), else as strings."""
        name, bracket, rest = text.partition("[")
        options: dict[str, Any] = {}
        if bracket:
            if not rest.endswith("]"):
                raise ScenarioError(
                    f"implementation {text!r}: options go in brackets, e.g. process[start_method=spawn]"
                )
            for item in filter(None, rest[:-1].split(",")):
                key, eq, raw = item.partition("=")
                if not eq or not key.strip():
                    raise ScenarioError(f"implementation {text!r}: option {item!r} must be key=value")
                try:
                    options[key.strip()] = json.loads(raw)
                except json.JSONDecodeError:
                    options[key.strip()] = raw.strip()
        try:
            return cls(name=name.strip(), options=options)
        except ValidationError as e:
            raise ScenarioError(f"implementation {text!r}: {_first_message(e)}") from None

    @property
    def shown(self) -> str:
        """The name in tables: the label, or the name with its options."""
        if self.label:
            return self.label
        if not self.options:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in self.options.items())}]"


class Target(_Strict):
    """What one implementation must reach: ``impl``'s ``metric`` at least ``at_least``
    times ``versus``'s (latency and memory inverted, so higher is better), where
    ``versus`` is an implementation or ``"ideal"`` (workers / the mean time one job
    ran); or, without ``versus``, at most ``at_most`` in the metric's unit."""

    impl: str
    versus: str | None = None
    metric: Literal["throughput", "lat_p50_ms", "lat_p99_ms", "mb_per_100k"] = "throughput"
    at_least: float | None = Field(default=None, gt=0)
    at_most: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_bound(self) -> Target:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give at_least (a ratio against versus) or at_most (a bound on the metric), one of them")
        if self.at_least is not None and self.versus is None:
            raise ValueError("at_least is a ratio: name what it is against in versus (an implementation, or 'ideal')")
        if self.versus == "ideal" and self.metric != "throughput":
            raise ValueError("the ideal is a throughput (workers / mean run time): use metric = 'throughput'")
        return self

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "throughput"


class Scenario(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*$", max_length=64)
    description: str = ""
    #: the job mix (TOML: [[workload]] tables); experiments other than load and memory need none
    workloads: tuple[WorkloadSpec, ...] = Field(default=(), alias="workload")
    jobs: int = Field(default=2000, gt=0)
    arrival: Literal["closed", "serial", "map", "fixed", "poisson", "bursty"] = "closed"
    #: open loop: offered load as a multiple of capacity (workers / mean job seconds) ...
    load: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    #: ... or as jobs per second
    rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    burst: int = Field(default=50, gt=0)  # bursty: jobs per burst (bursts at the average rate)
    workers: int = Field(default=4, gt=0)
    queue_size: int = Field(default=100, ge=0)
    overflow: Literal["block", "reject"] = "block"
    wait: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # block with a bound, then QueueFull
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # per attempt, given to every job
    retries: int = Field(default=0, ge=0)  # extra attempts (Retry(attempts=1+retries))
    priorities: tuple[Priority, ...] = (Priority(weight=1.0, priority=0),)
    #: our pools run every job with priority= (alternating 0 and 1) and timeout=60 s (never
    #: reached), as their users keep them; the contenders have neither (`poolbench contenders`)
    armed: bool = False
    #: the driver: "load" (the load generator) or an experiment of scenarios.experiments
    experiment: str = "load"
    #: load: memory per job (-benchmem), tracemalloc in a pass of its own after the timed run
    benchmem: bool = True
    #: record a py-spy profile of this scenario's measurements (as `poolbench run --profile`)
    profile: bool = False
    #: {option: [values]}: one case per value
    sweep: dict[str, tuple[Any, ...]] | None = None
    #: the quick run's changes (fewer jobs, a shorter sweep)
    quick: dict[str, Any] = Field(default_factory=dict)
    #: the implementations it runs when the run names none (None: the run's default)
    implementations: tuple[ImplSpec, ...] | None = None
    #: what our implementations must reach against the others (TOML: [[target]] tables; the report checks them)
    targets: tuple[Target, ...] = Field(default=(), alias="target")
    #: mean duration of one job of the mix in ms, measured by the runner for the user's
    #: functions when `load` needs it
    job_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("implementations", mode="before")
    @classmethod
    def _names_are_specs(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):  # "thread" is {name = "thread"}
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("experiment")
    @classmethod
    def _known_experiment(cls, value: str) -> str:
        if value not in experiments.names():
            raise ValueError(f"unknown experiment {value!r}; valid: {', '.join(experiments.names())}")
        return value

    @field_validator("sweep")
    @classmethod
    def _one_option(cls, value: dict[str, tuple[Any, ...]] | None) -> dict[str, tuple[Any, ...]] | None:
        if value is None:
            return None
        if len(value) != 1:
            raise ValueError(f"a sweep varies one option, got {len(value)}: {', '.join(value) or 'none'}")
        ((option, values),) = value.items()
        if option not in SWEEPABLE:
            raise ValueError(f"cannot sweep {option!r}; sweepable: {', '.join(SWEEPABLE)}")
        if not values:
            raise ValueError(f"the sweep of {option} has no values")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if not self.workloads and self.experiment in ("load", "memory"):
            raise ValueError("no workload: give at least one [[workload]] table (fn = 'module:function', or type)")
        if self.arrival in OPEN:
            sweeps_rate = self.sweep is not None and next(iter(self.sweep)) in ("load", "rate")
            if self.load is not None and self.rate is not None:
                raise ValueError("give load (× capacity) or rate (jobs/s), not both")
            if self.load is None and self.rate is None and not sweeps_rate:
                raise ValueError(f"arrival {self.arrival!r} is an open loop: give rate (jobs/s) or load (× capacity)")
        elif self.load is not None or self.rate is not None:
            raise ValueError(f"arrival {self.arrival!r} offers no rate: load and rate need fixed, poisson or bursty")
        if self.sweep is not None:
            for _ in self.variants():  # each value must make a valid scenario
                pass
        if self.quick:
            if "quick" in self.quick or "name" in self.quick:
                raise ValueError("quick changes the scenario's options, not its name or quick")
            Scenario.model_validate({**self.model_dump(), **self.quick, "quick": {}})
        return self

    # ------------------------------------------------------------ derived

    def mean_job_seconds(self) -> float | None:
        """Mean duration of a job of the mix: measured (``job_ms``), or from the
        built-in types' parameters; None when neither says it."""
        if self.job_ms is not None:
            return self.job_ms / 1000
        known: list[tuple[float, float]] = []
        for w in self.workloads:
            ms = w.known_ms
            if ms is None:
                return None
            known.append((w.weight, ms))
        if not known:
            return None
        total = sum(weight for weight, _ in known)
        return sum(weight * ms for weight, ms in known) / total / 1000

    def needs_duration(self) -> bool:
        """Whether the offered rate depends on a duration the runner must measure."""
        by_load = self.load is not None or (self.sweep is not None and "load" in self.sweep)
        return self.arrival in OPEN and by_load and self.mean_job_seconds() is None

    def rate_per_s(self) -> float | None:
        """Offered jobs/s of an open-loop scenario; None for closed, serial and map."""
        if self.arrival not in OPEN:
            return None
        if self.rate is not None:
            return self.rate
        mean = self.mean_job_seconds()
        if not mean or self.load is None:
            raise ScenarioError(
                f"scenario {self.name!r}: load is a multiple of capacity, which needs the jobs' mean duration; "
                "give rate (jobs/s) instead, or let the runner measure the duration"
            )
        return self.load * self.workers / mean

    def user_code(self) -> bool:
        """Whether its mix runs the user's functions (not only built-in job types)."""
        return any(w.type is None for w in self.workloads)

    def changed(self, **changes: Any) -> Scenario:
        """A copy with ``changes``, validated."""
        return Scenario.model_validate({**self.model_dump(), **changes})

    def variants(self) -> Iterator[tuple[str, Scenario]]:
        """(variant, scenario) per value of the sweep; ("", self) without one."""
        if not self.sweep:
            yield "", self
            return
        ((option, values),) = self.sweep.items()
        for value in values:
            try:
                if option == "overflow" and value == "block-wait":
                    sc = self.changed(overflow="block", wait=BLOCK_WAIT, sweep=None)
                elif option == "ms":  # the duration parameter of the built-in types in the mix
                    timed = [w for w in self.workloads if w.type is not None and "ms" in w.params]
                    if not timed:
                        raise ValueError("a sweep of ms needs a built-in job type with an ms parameter in the mix")
                    mix = [
                        w.model_dump() | ({"params": {**w.params, "ms": value}} if w in timed else {})
                        for w in self.workloads
                    ]
                    sc = self.changed(workloads=mix, sweep=None)
                else:
                    sc = self.changed(**{option: value}, sweep=None)
            except ValidationError as e:
                raise ValueError(f"sweep of {option}, value {value!r}: {_first_message(e)}") from None
            yield f"{option}={value}", sc.model_copy(update={"sweep": self.sweep})


class Case(BaseModel):
    """One scenario with one value of its sweep: what one measurement runs."""

    model_config = ConfigDict(frozen=True)

    scenario: Scenario
    variant: str = ""  # "" or "queue_size=10"

    @property
    def key(self) -> str:
        return f"{self.scenario.name}[{self.variant}]" if self.variant else self.scenario.name

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.model_dump(mode="json"), "variant": self.variant}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Case:
        return Case(scenario=Scenario.model_validate(data["scenario"]), variant=data["variant"])


def cases(sc: Scenario, *, quick: bool = False) -> list[Case]:
    """The cases of a scenario: one per sweep value, or the scenario itself."""
    if quick and sc.quick:
        sc = sc.changed(**sc.quick, quick={})
    return [Case(scenario=variant, variant=name) for name, variant in sc.variants()]


# ------------------------------------------------------------ the files


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_message(e: ValidationError) -> str:
    return _message(e.errors(include_url=False)[0])


def _message(err: ErrorDetails) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-union"))))
    # pydantic names the branch of a union it tried ("str", "list[any]"): the field is what the user wrote
    loc = tuple(p for p in loc if p not in ("str", "list[any]", "dict[str,any]"))
    where = _where(loc)
    if err["type"] == "extra_forbidden":
        return f"unknown field {where!r}"
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    got = "" if err["type"].startswith("value_error") or "input" not in err else f", got {err['input']!r:.80}"
    return f"field {where}: {msg}{got}" if where else f"{msg}{got}"


def _fields_of(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or name for name, f in model.model_fields.items())


def parse(data: dict[str, Any], where: str) -> Scenario:
    """A scenario from the data of a TOML file (or its equivalent); ScenarioError naming ``where``."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        lines = [_message(err) for err in errors[:5]]
        if any(err["type"] == "extra_forbidden" and len(err["loc"]) == 1 for err in errors):
            lines.append(f"a scenario's fields are: {_fields_of(Scenario)}")
        if any(err["type"] == "extra_forbidden" and err["loc"][:1] == ("workload",) for err in errors):
            lines.append(f"a workload's fields are: {_fields_of(WorkloadSpec)}")
        raise ScenarioError(f"{where}: " + "; ".join(lines)) from None


def load_file(path: str | os.PathLike[str]) -> Scenario:
    """Read one scenario from a TOML file. Its name defaults to the file's stem; a
    relative argument file is relative to the scenario file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file (in {os.getcwd()})") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read it: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    data.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return parse(_relative_to(data, os.path.dirname(os.path.abspath(path))), path)


def _relative_to(data: dict[str, Any], base: str) -> dict[str, Any]:
    mix = data.get("workload")
    if isinstance(mix, list):
        for w in mix:
            args = w.get("args") if isinstance(w, dict) else None
            if isinstance(args, str) and not IMPORT_PATH.match(args) and not os.path.isabs(args):
                w["args"] = os.path.join(base, args)
    return data


# ------------------------------------------------------------ the built-in scenarios

#: the built-in scenarios' files; contenders/ holds the preset of `poolbench contenders`
BUILTIN_DIRS = {"": "builtin", "contenders": "builtin/contenders"}
_CACHE: dict[str, dict[str, Scenario]] = {}


def builtin(group: str = "") -> dict[str, Scenario]:
    """The built-in scenarios of ``group`` ("" the main ones, "contenders"), by name,
    in the order of their files (named NN-name.toml)."""
    if group not in _CACHE:
        folder = resources.files("scenarios").joinpath(BUILTIN_DIRS[group])
        found: dict[str, Scenario] = {}
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml"):
                with resources.as_file(entry) as path:
                    sc = load_file(path)
                found[sc.name] = sc
        _CACHE[group] = found
    return dict(_CACHE[group])


def names(group: str = "") -> tuple[str, ...]:
    return tuple(builtin(group))


def resolve(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path (``.toml``)."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_file(name_or_path)
    for group in BUILTIN_DIRS:
        found = builtin(group).get(name_or_path)
        if found is not None:
            return found
    every = [n for group in BUILTIN_DIRS for n in builtin(group)]
    raise ScenarioError(f"unknown scenario {name_or_path!r}: not a file (.toml), nor one of: {', '.join(every)}")
