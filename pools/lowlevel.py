"""What backend authors need, apart from what every user needs (as ``trio.lowlevel``).

A backend is a ``Backend`` subclass: the pool calls ``prepare``, ``start``,
``wake_locked``, ``stop_attempt`` and ``stop``; the backend drives the jobs through
the ``Dispatcher`` it is given, and declares what it can do in one frozen
``Capabilities`` value. Register it with ``pools.register_backend`` and check it with
``pools.testing.conformance.PoolConformance``. The built-in backends (``pools.thread``,
``pools.process``, ``pools.aio``, ``pools.dask``) use nothing else of the core.

Helpers: ``DeadlineWatch`` (running attempts' deadlines, on the pool's timer), the job
context (``JobContext``, ``set_current_context``, ``cancel_context``), the callable
checks, ``mark_internal`` (a thread of the backend that settles jobs), a private
event loop on a thread (``run_private_loop``), race mode's hook (``race_point(name)``
marks a hand-off point of the backend's own, where ``pools.testing.race`` may
yield or pause; ``set_race_hook`` installs a hook of your own),
``add_forkserver_preload`` (modules the fork server imports once, kept beside the
program's own), ``exit_with`` (a process that ends when another one does, however
that one ends: a worker with its pool's process), and ``pools.remote``: the protocol
for workers in other processes or on other machines.
"""

from ._backend import Backend, Dispatcher, check_plain_callable, is_coroutine_function
from ._callbacks import mark_internal
from ._context import JobContext, cancel_context, reset_current_context, set_current_context
from ._forkserver import add_forkserver_preload
from ._job import Job
from ._lifeline import exit_with
from ._loop import run_private_loop
from ._race import race_point, set_race_hook
from ._timer import DeadlineWatch, Timer
from ._types import Capabilities, Ended, JobStatus, Outcome, check_int, check_number

__all__ = [
    "Backend",
    "Capabilities",
    "DeadlineWatch",
    "Dispatcher",
    "Ended",
    "Job",
    "JobContext",
    "JobStatus",
    "Outcome",
    "Timer",
    "add_forkserver_preload",
    "cancel_context",
    "check_int",
    "check_number",
    "check_plain_callable",
    "exit_with",
    "is_coroutine_function",
    "mark_internal",
    "race_point",
    "reset_current_context",
    "run_private_loop",
    "set_current_context",
    "set_race_hook",
]
