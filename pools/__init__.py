"""poolbench's worker pools: one interface, interchangeable backends.

>>> import pools
>>> with pools.create_pool("thread", workers=4) as pool:
...     pool.submit(pow, 2, 10).result()
1024

Backends load lazily: importing ``pools`` imports no backend module. What backend
authors need is in ``pools.lowlevel``; the testing kit in ``pools.testing``.
"""

# First: importing it installs the finder that chooses compiled or pure modules.
from . import _compiled  # noqa: F401  (isort keeps it first: "." sorts before "._")
from ._context import JobContext, current_context
from ._core import Pool, create_pool
from ._job import Job
from ._registry import available_backends, register_backend, registered_backends
from ._types import Capabilities, JobStatus, PoolStats, Retry, RunningJob, ShutdownReport, WorkerOptions
from .exceptions import (
    BackendUnavailable,
    InvalidArgument,
    InvalidCallable,
    JobCancelled,
    JobTimeout,
    Leaked,
    LoopJobCancelled,
    NoCurrentJob,
    PoolBroken,
    PoolClosed,
    PoolError,
    QueueFull,
    RemoteTraceback,
    UnknownBackend,
    WorkerCrashed,
)
from .executor import Executor

__all__ = [
    "BackendUnavailable",
    "Capabilities",
    "Executor",
    "InvalidArgument",
    "InvalidCallable",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobStatus",
    "JobTimeout",
    "Leaked",
    "LoopJobCancelled",
    "NoCurrentJob",
    "Pool",
    "PoolBroken",
    "PoolClosed",
    "PoolError",
    "PoolStats",
    "QueueFull",
    "RemoteTraceback",
    "Retry",
    "RunningJob",
    "ShutdownReport",
    "UnknownBackend",
    "WorkerCrashed",
    "WorkerOptions",
    "available_backends",
    "create_pool",
    "current_context",
    "register_backend",
    "registered_backends",
]

__version__ = "0.1.0"
