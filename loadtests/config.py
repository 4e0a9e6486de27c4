"""What one load test is: a frozen value that ``poolbench loadtest`` fills from its
arguments, and the orchestrator and the summary read."""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import MixEntry

__all__ = ["LoadTest"]


@dataclass(frozen=True)
class LoadTest:
    mix: tuple[MixEntry, ...]  # made by orchestrator.parse_mix, which checks it, before any process starts
    backend: str = "thread"
    workers: int | None = None  # None: the backend's default
    queue_size: int = 1000
    users: int = 10  # locust users at the peak
    spawn_rate: float = 10.0  # users started per second
    duration: float = 30.0  # seconds
    shape: str = "steady"  # one of profiles.SHAPES
    locust_workers: int = 0  # 0: one locust process; K: a master and K workers
    user_rate: float = 0.0  # iterations per second per user; 0: as fast as possible (overload sets its own)
    drain_timeout: float = 10.0  # the service's drain deadline at the end
    results_dir: str = "results/loadtests"
    jobtypes: tuple[str, ...] = ()  # modules of job types the service loads (--jobtypes), besides the installed ones
