"""Race mode: the nearest Python gets to ``go test -race``.

Python has no data-race detector; what it can do is make the bad interleavings
likely. Race mode runs code under a hostile schedule:

- ``sys.setswitchinterval`` set tiny (1 µs instead of 5 ms), so that the
  interpreter hands the GIL to another thread between almost any two bytecodes
  of a check-then-act, not once in thousands of them;
- at every hand-off point of the pools (``submit``, ``take``, ``finish``,
  ``cancel``, ``timeout``, ``shutdown``, and a backend's own
  ``pools.lowlevel.race_point(name)``), a seeded random choice: go on, yield the
  GIL (``time.sleep(0)``), or pause for up to ``max_delay`` seconds.

The choices come from one ``random.Random(seed)``, so a seed replays the same
sequence of injected yields and pauses. The operating system's scheduler is not
replayed: a replayed seed makes the failing interleaving likely again, not certain.

Use it as a context manager, or through the pytest plugin (``--pools-race=N``
reruns every test N times, each under race mode with its own seed; a failure
prints the seed; ``--pools-race-seed=S`` replays it)::

    from pools.testing.race import race_mode, run_with_race

    with race_mode(seed=1234) as race:
        exercise_my_pool()
    print(race.points)               # how many times each hand-off point was reached

    run_with_race(exercise_my_pool, runs=50)   # RaceFailure names the seed that failed
"""

from __future__ import annotations

import collections
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .._race import set_race_hook
from ..exceptions import InvalidArgument, RaceFailure

__all__ = ["RaceFailure", "RaceMode", "race_mode", "run_with_race"]

SWITCH_INTERVAL = 1e-6  # seconds: sys.setswitchinterval under race mode
PROBABILITY = 0.5  # chance that a hand-off point yields or pauses
MAX_DELAY = 200e-6  # seconds: the longest injected pause

_active_lock = threading.Lock()
_active: RaceMode | None = None


class RaceMode:
    """The hostile schedule of one ``race_mode`` block: its ``seed``, and ``points``,
    how many times each hand-off point was reached (a ``collections.Counter``)."""

    def __init__(self, seed: int, probability: float, max_delay: float) -> None:
        self.seed = seed
        self.probability = probability
        self.max_delay = max_delay
        self.points: collections.Counter[str] = collections.Counter()
        self._random = random.Random(seed)

    def __call__(self, point: str) -> None:
        # Called by the pools at each hand-off point, from any thread. random() is one
        # C call, atomic under the GIL: the sequence of choices is the seed's.
        self.points[point] += 1
        r = self._random.random()
        if r >= self.probability:
            return
        if r < self.probability / 2:
            time.sleep(0)  # give the GIL away
        else:
            time.sleep(self.max_delay * r / self.probability)

    def __repr__(self) -> str:
        return f"<RaceMode seed={self.seed} points={dict(self.points)}>"


def new_seed() -> int:
    """A fresh seed (from the operating system's randomness)."""
    return random.SystemRandom().randrange(2**32)


@contextmanager
def race_mode(
    seed: int | None = None,
    *,
    switch_interval: float = SWITCH_INTERVAL,
    probability: float = PROBABILITY,
    max_delay: float = MAX_DELAY,
) -> Iterator[RaceMode]:
    """Run the block under race mode (see the module's docstring); ``seed=None``
    picks one (read it from the value yielded, ``.seed``). One block at a time in
    a process: the switch interval and the hook are process-wide."""
    global _active
    if seed is None:
        seed = new_seed()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgument(f"seed must be an int, got {seed!r}")
    if not 0 <= probability <= 1:
        raise InvalidArgument(f"probability must be between 0 and 1, got {probability!r}")
    if not 0 <= max_delay <= 1:
        raise InvalidArgument(f"max_delay must be between 0 and 1 second, got {max_delay!r}")
    mode = RaceMode(seed, probability, max_delay)
    with _active_lock:
        if _active is not None:
            raise InvalidArgument(
                f"race mode is already on (seed {_active.seed}): one race_mode block at a time, "
                "because the switch interval and the pools' hook are process-wide"
            )
        _active = mode
    interval = sys.getswitchinterval()
    previous = set_race_hook(mode)
    sys.setswitchinterval(switch_interval)
    try:
        yield mode
    finally:
        sys.setswitchinterval(interval)
        set_race_hook(previous)
        with _active_lock:
            _active = None


def run_with_race(fn: Callable[[], Any], runs: int = 10, *, seed: int | None = None, **options: Any) -> None:
    """Call ``fn()`` ``runs`` times, each under race mode with its own seed (``seed``,
    ``seed + 1``...; a fresh one when None). The first run that raises stops it:
    ``RaceFailure`` names its seed, with the exception as ``__cause__``."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise InvalidArgument(f"runs must be an int >= 1, got {runs!r}")
    base = new_seed() if seed is None else seed
    for i in range(runs):
        s = base + i
        try:
            with race_mode(s, **options):
                fn()
        except Exception as e:
            raise RaceFailure(
                f"run {i + 1} of {runs} under race mode failed with seed {s}: {e!r}; "
                f"replay it with race_mode(seed={s})",
                seed=s,
            ) from e
