"""Declarative workloads: what to run, how jobs arrive, and on what pool.

A :class:`Scenario` says which job types run (with weights and parameters), how
many jobs, how they arrive (closed loop, or open loop at a fixed or Poisson rate,
or in bursts), the pool's options, and the failure, timeout, retry and priority
mix. It names no backend: the runner runs every scenario unchanged on each one.
A scenario with ``sweep`` expands into one *case* per value of one pool option,
of the offered load, or of the jobs' duration (``ms``), for the sweeps of the
course's key questions.

Open-loop rates are given as ``load``, a multiple of the pool's capacity for
sleep-type jobs (``workers / mean duration``), so that "2× what the pool can
serve" means the same on every machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["SCENARIOS", "Case", "Scenario", "cases", "names"]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    #: (weight, job type, params): the job mix, from scenarios.jobtypes
    mix: tuple[tuple[float, str, dict], ...]
    jobs: int = 2000
    #: "closed" (submit as fast as the pool accepts), "fixed", "poisson", "bursty"
    arrival: str = "closed"
    #: open loop: offered load as a multiple of capacity (workers / mean job seconds)
    load: float | None = None
    burst: int = 50  # bursty: jobs per burst (bursts at the average rate of `load`)
    workers: int = 4
    queue_size: int = 100
    overflow: str = "block"
    wait: float | None = None  # block with a bound, then QueueFull
    timeout: float | None = None  # per-attempt timeout given to every job
    retries: int = 0  # extra attempts (Retry(attempts=1+retries))
    #: (weight, priority): the priority mix
    priorities: tuple[tuple[float, int], ...] = ((1.0, 0),)
    #: a special driver instead of the load generator (see scenarios.experiments)
    driver: str | None = None
    #: (option, values): one case per value, e.g. ("queue_size", (0, 1, 10, 100))
    sweep: tuple[str, tuple[Any, ...]] | None = None
    #: the quick run's changes (fewer jobs, a shorter sweep)
    quick: dict = field(default_factory=dict)
    #: backends this scenario applies to (None: all); e.g. primitives are thread-only
    backends: tuple[str, ...] | None = None

    def mean_job_seconds(self) -> float:
        """Mean duration of a job of the mix, from its sleep-like parameters."""
        total = weight = 0.0
        for w, job, params in self.mix:
            ms = params.get("ms", params.get("scale_ms", 0.0))
            if job == "heavy_tail":  # Pareto mean: scale * alpha / (alpha - 1), before the cap
                alpha = params.get("alpha", 1.5)
                ms = min(params.get("max_ms", 1000.0), params.get("scale_ms", 1.0) * alpha / (alpha - 1))
            total += w * ms / 1000
            weight += w
        return total / weight if weight else 0.0

    def rate(self) -> float | None:
        """Offered jobs/s of an open-loop scenario."""
        if self.arrival == "closed" or self.load is None:
            return None
        mean = self.mean_job_seconds()
        if mean <= 0:
            raise ValueError(f"scenario {self.name!r}: open loop needs jobs with a duration")
        return self.load * self.workers / mean


@dataclass(frozen=True)
class Case:
    """One scenario with one value of its sweep: what one measurement runs."""

    scenario: Scenario
    variant: str  # "" or "queue_size=10"

    @property
    def key(self) -> str:
        return f"{self.scenario.name}[{self.variant}]" if self.variant else self.scenario.name

    def to_json(self) -> dict:
        return {"scenario": asdict(self.scenario), "variant": self.variant}

    @staticmethod
    def from_json(data: dict) -> Case:
        sc = dict(data["scenario"])
        sc["mix"] = tuple((w, j, dict(p)) for w, j, p in sc["mix"])
        sc["priorities"] = tuple((w, p) for w, p in sc["priorities"])
        if sc.get("sweep"):
            sc["sweep"] = (sc["sweep"][0], tuple(sc["sweep"][1]))
        if sc.get("backends"):
            sc["backends"] = tuple(sc["backends"])
        return Case(Scenario(**sc), data["variant"])


def _sleep(ms: float) -> tuple[tuple[float, str, dict], ...]:
    return ((1.0, "sleep", {"ms": ms}),)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "noop",
            "pure overhead: no-op jobs, closed loop",
            ((1.0, "noop", {}),),
            jobs=20000,
            workers=2,
            queue_size=1000,
            quick={"jobs": 5000},
        ),
        Scenario(
            "cpu",
            "1 ms of pure-Python CPU per job on 2 workers: threads share the GIL, processes do not",
            ((1.0, "cpu", {"ms": 1.0}),),
            jobs=1000,
            workers=2,
            quick={"jobs": 300},
        ),
        Scenario(
            "io",
            "1 ms sleeps (I/O-like) on 8 workers, closed loop",
            _sleep(1.0),
            jobs=4000,
            workers=8,
            quick={"jobs": 1000},
        ),
        Scenario(
            "mixed",
            "70% 1 ms sleeps, 20% 1 ms CPU, 10% no-ops, Poisson arrivals at 0.7x capacity",
            ((0.7, "sleep", {"ms": 1.0}), (0.2, "cpu", {"ms": 1.0}), (0.1, "noop", {})),
            jobs=2000,
            workers=4,
            arrival="poisson",
            load=0.7,
            quick={"jobs": 600},
        ),
        Scenario(
            "heavy_tail",
            "Pareto(1.5) sleeps from 0.5 ms (capped at 200 ms), Poisson at 0.6x capacity",
            ((1.0, "heavy_tail", {"alpha": 1.5, "scale_ms": 0.5, "max_ms": 200.0}),),
            jobs=1500,
            workers=8,
            arrival="poisson",
            load=0.6,
            quick={"jobs": 500},
        ),
        Scenario(
            "bursty",
            "bursts of 50 jobs of 1 ms, on average at 0.6x capacity",
            _sleep(1.0),
            jobs=2000,
            workers=4,
            arrival="bursty",
            load=0.6,
            burst=50,
            queue_size=100,
            quick={"jobs": 600},
        ),
        Scenario(
            "failing",
            "30% of jobs fail; 2 retries with back-off",
            ((1.0, "fail", {"probability": 0.3, "ms": 0.5}),),
            jobs=2000,
            workers=4,
            retries=2,
            quick={"jobs": 600},
        ),
        Scenario(
            "timeouts",
            "10% of jobs overrun a 20 ms timeout (they would take 200 ms)",
            ((0.9, "sleep", {"ms": 1.0}), (0.1, "sleep", {"ms": 200.0})),
            jobs=600,
            workers=4,
            timeout=0.02,
            quick={"jobs": 200},
        ),
        Scenario(
            "priority",
            "20% high-priority jobs among low ones, open loop at 0.95x capacity: how long each class waits",
            _sleep(2.0),
            jobs=1500,
            workers=4,
            arrival="poisson",
            load=0.95,
            priorities=((0.8, 0), (0.2, 10)),
            quick={"jobs": 500},
        ),
        Scenario(
            "overload",
            "offered load 2x capacity (2 ms sleeps), under each overflow policy",
            _sleep(2.0),
            jobs=2000,
            workers=4,
            queue_size=50,
            arrival="fixed",
            load=2.0,
            sweep=("overflow", ("block", "reject", "block-wait")),
            quick={"jobs": 600},
        ),
        Scenario(
            "queue_sweep",
            "buffered vs unbuffered: a queue_size sweep from 0 up, Poisson at 0.9x capacity",
            _sleep(1.0),
            jobs=1500,
            workers=4,
            arrival="poisson",
            load=0.9,
            overflow="reject",
            sweep=("queue_size", (0, 1, 4, 16, 64)),
            quick={"jobs": 500, "sweep": ("queue_size", (0, 4, 64))},
        ),
        Scenario(
            "saturation",
            "throughput against offered load (0.5x to 2x capacity): the saturation knee",
            _sleep(2.0),
            jobs=1500,
            workers=4,
            arrival="fixed",
            queue_size=20,
            overflow="reject",
            sweep=("load", (0.5, 0.8, 1.0, 1.25, 1.5, 2.0)),
            quick={"jobs": 400, "sweep": ("load", (0.5, 1.0, 2.0))},
        ),
        Scenario(
            "workers_sweep",
            "throughput of 1 ms sleeps against the number of workers",
            _sleep(1.0),
            jobs=2000,
            sweep=("workers", (1, 2, 4, 8, 16)),
            quick={"jobs": 500, "sweep": ("workers", (1, 4, 16))},
        ),
        Scenario(
            "duration_sweep",
            "throughput and overhead against job duration (sleeps of 0.1 to 10 ms)",
            _sleep(1.0),
            jobs=1000,
            workers=4,
            sweep=("ms", (0.1, 1.0, 10.0)),
            quick={"jobs": 300, "sweep": ("ms", (0.1, 1.0, 10.0))},
        ),
        Scenario(
            "cancel_latency",
            "cancel vs timeout: from cancel() or the deadline to the caller seeing the job end",
            _sleep(5000.0),
            jobs=40,
            workers=2,
            driver="cancel_latency",
            quick={"jobs": 15},
        ),
        Scenario(
            "primitives",
            "Go's Mutex, RWMutex, WaitGroup, atomic: Python's answers, ops/s with 4 threads",
            ((1.0, "noop", {}),),
            jobs=20000,
            workers=4,
            driver="primitives",
            backends=("thread",),
            quick={"jobs": 5000},
        ),
        Scenario(
            "leaks",
            "what the leak checker catches when a job or a pool is left running",
            ((1.0, "noop", {}),),
            jobs=1,
            workers=2,
            driver="leaks",
        ),
        Scenario(
            "racy_pool",
            "testing concurrent code: the conformance kit run on a deliberately racy pool",
            ((1.0, "noop", {}),),
            jobs=1,
            workers=2,
            driver="racy_pool",
            backends=("thread",),
        ),
    ]
}

QUICK_DEFAULT = (
    "noop",
    "cpu",
    "io",
    "mixed",
    "heavy_tail",
    "bursty",
    "failing",
    "timeouts",
    "priority",
    "overload",
    "queue_sweep",
    "saturation",
    "workers_sweep",
    "duration_sweep",
    "cancel_latency",
    "primitives",
    "leaks",
    "racy_pool",
)


def names() -> tuple[str, ...]:
    return tuple(SCENARIOS)


def cases(name: str, *, quick: bool = False) -> list[Case]:
    """The cases of scenario ``name``: one per sweep value, or the scenario itself."""
    try:
        sc = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}") from None
    if quick and sc.quick:
        sc = replace(sc, **sc.quick)
    if not sc.sweep:
        return [Case(sc, "")]
    option, values = sc.sweep
    out = []
    for value in values:
        if option == "overflow" and value == "block-wait":
            variant_sc = replace(sc, overflow="block", wait=0.01)
        elif option == "ms":  # the jobs' duration, inside the mix
            mix = tuple((w, job, {**params, "ms": value}) for w, job, params in sc.mix)
            variant_sc = replace(sc, mix=mix)
        else:
            variant_sc = replace(sc, **{option: value})
        out.append(Case(variant_sc, f"{option}={value}"))
    return out
