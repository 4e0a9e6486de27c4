"""Testing tools for pools and for code that uses them.

- The leak checker: ``with pools.testing.no_leaks(): ...`` or ``snapshot()`` then
  ``check_leaks(before)``; raises :class:`pools.Leaked`. ``descendants(pid)`` and
  ``wait_process_gone(pid, timeout)`` for the processes of a program a test starts.
- The conformance kit: ``pools.testing.conformance.PoolConformance``, one test
  class that every backend must pass. A new backend passes it with one class::

      from pools.testing.conformance import PoolConformance

      class TestMyBackend(PoolConformance):
          backends = ("mybackend",)   # a name given to pools.register_backend

- Job functions and cross-process signals for tests: :mod:`pools.testing.jobs`.
- Race mode (a hostile, seeded schedule at the pools' hand-off points; the plugin's
  ``--pools-race=N`` and ``--pools-race-seed=S``): :mod:`pools.testing.race`.
- A pytest plugin (loaded automatically once poolbench is installed) with the
  ``pool_backend``, ``make_pool``, ``leak_check`` and ``pool_benchmark`` fixtures;
  what ``pool_benchmark`` times (the implementations, their warm-up, a round) is
  :mod:`pools.testing.bench`.
"""

from ._leaks import (
    Snapshot,
    check_leaks,
    descendants,
    find_leaks,
    no_leaks,
    process_alive,
    snapshot,
    wait_process_gone,
)

__all__ = [
    "Snapshot",
    "check_leaks",
    "descendants",
    "find_leaks",
    "no_leaks",
    "process_alive",
    "snapshot",
    "wait_process_gone",
]
