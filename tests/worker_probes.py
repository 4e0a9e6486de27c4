"""Jobs that ask a worker process what it has imported. This module imports nothing
of the harness, so that a worker that runs them has imported only what it was sent."""

from __future__ import annotations

import sys

from pools.testing.jobs import Gate, Latch


def imported_once_all_held(gate: Gate, latch: Latch, names: tuple[str, ...]) -> list[bool]:
    """Whether each of ``names`` is imported in this worker, asked once every worker
    holds one of these jobs (so that each worker answers exactly once)."""
    latch.arrive()
    gate.wait()
    return [imported(name) for name in names]


def imported(name: str) -> bool:
    """Whether module ``name`` is imported in this worker."""
    return name in sys.modules
