"""A reference, not a contender: an Executor with no pool and no thread, which runs each
job in the submitting thread and returns it as a settled ``concurrent.futures.Future``.

Through the harness it measures the harness itself plus one ``Future`` a job: the most
that any executor returning a ``Future`` per job could reach under the GIL, where the
submitter's work and the workers' take turns. It puts the no-op targets in proportion,
in the same run::

    poolbench run contenders.noop --impl thread --impl ThreadPoolExecutor \\
        --impl benchmarks.inline:InlineExecutor --repeats 5
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any


class InlineExecutor(concurrent.futures.Executor):
    """``submit`` runs the call at once, here; ``workers`` is taken and ignored."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the job's error goes to its future (not Ctrl-C)
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future
