"""Runs CPython's own executor test suite (``Lib/test/test_concurrent_futures.py``)
against ``pools.Executor``; ``tests/test_executor.py`` starts it in a subprocess.

Usage: ``python tests/cpython_executor_suite.py SUITE_DIR SUMMARY.json [I/N]``
(``I/N``: every N-th test from the I-th, 0-based: the test runs N such shards at once,
as the suite mostly sleeps) where ``SUITE_DIR`` holds
the ``test`` package of the running Python's version (Debian:
``/usr/lib/python3.11``, package ``libpython3.11-testsuite``). Only that package
is put on the path (through a directory holding a link to it): the rest of the
standard library stays the running interpreter's own.

The suite's executor mixins build ``pools.Executor`` instead of the standard
executors: ``ThreadPoolMixin`` on the "thread" backend, ``ProcessPoolForkserverMixin``
on the "process" backend (its default start method; the fork and spawn variants run
the same tests and are left out to bound the run time). The tests that cannot apply
are skipped with the reason (``NOT_APPLICABLE``). The summary, written as JSON to
``SUMMARY.json``: counts, and the ids of the tests that failed or were not applicable.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
from typing import Any

# The tests that cannot apply to pools.Executor, by (class, test) and why. A class
# named "*" stands for every selected class that has the test.
_PRIVATE_THREADS = "inspects ThreadPoolExecutor's private '_threads' set"
_PRIVATE_PROCESSES = "inspects ProcessPoolExecutor's private '_processes' or '_executor_manager_thread'"
_BY_NAME = (
    "runs the standard executor in a child interpreter, imported by its class name from "
    "concurrent.futures: it tests that class, not this one"
)
_CRASH = (
    "expects a crashing worker or a failing pickle to break the whole executor (BrokenProcessPool); "
    "a pools process pool fails only the job concerned (WorkerCrashed, or its own error) and "
    "replaces the worker: by design, see the README"
)
_LOGGED = (
    "expects the initializer's failure logged on the 'concurrent.futures' logger (inside the worker "
    "process for processes); pools logs it on the 'pools' logger in the pool's process and raises "
    "PoolBroken (a BrokenExecutor) with the initializer's exception as __cause__"
)
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("*", "test_interpreter_shutdown"): _BY_NAME,
    ("*", "test_submit_after_interpreter_shutdown"): _BY_NAME,
    ("*", "test_hang_gh83386"): _BY_NAME,
    ("ThreadPoolShutdownTest", "test_threads_terminate"): _PRIVATE_THREADS,
    ("ThreadPoolShutdownTest", "test_context_manager_shutdown"): _PRIVATE_THREADS,
    ("ThreadPoolShutdownTest", "test_del_shutdown"): _PRIVATE_THREADS,
    ("ThreadPoolShutdownTest", "test_shutdown_no_wait"): _PRIVATE_THREADS,
    ("ThreadPoolShutdownTest", "test_thread_names_assigned"): _PRIVATE_THREADS,
    ("ThreadPoolShutdownTest", "test_thread_names_default"): _PRIVATE_THREADS,
    ("ThreadPoolExecutorTest", "test_saturation"): _PRIVATE_THREADS,
    ("ThreadPoolExecutorTest", "test_idle_thread_reuse"): _PRIVATE_THREADS,
    ("ThreadPoolExecutorTest", "test_default_workers"): "reads ThreadPoolExecutor's private '_max_workers'",
    ("ProcessPoolForkserverProcessPoolShutdownTest", "test_processes_terminate"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolShutdownTest", "test_context_manager_shutdown"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolShutdownTest", "test_del_shutdown"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolShutdownTest", "test_shutdown_no_wait"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_killed_child"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_saturation"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_idle_process_reuse_one"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_idle_process_reuse_multiple"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_max_tasks_per_child"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_max_tasks_early_shutdown"): _PRIVATE_PROCESSES,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_max_tasks_per_child_defaults_to_spawn_context"): (
        "checks that max_tasks_per_child makes ProcessPoolExecutor pick the spawn start method; "
        "pools recycles workers under any start method"
    ),
    ("ThreadPoolFailingInitializerTest", "test_initializer"): _LOGGED,
    ("ThreadPoolShutdownTest", "test_cancel_futures_wait_false"): _BY_NAME,
    ("ProcessPoolForkserverProcessPoolExecutorTest", "test_traceback"): (
        "asserts that the cause's class is ProcessPoolExecutor's private _RemoteTraceback; pools "
        "attaches its own RemoteTraceback, with the worker's traceback text in the same 'tb' attribute"
    ),
    ("*", "test_cancel_futures"): (
        "assumes that some of 50 calls submitted just before shutdown(cancel_futures=True) have "
        "started: ThreadPoolExecutor starts a thread inside submit, which takes the call before "
        "submit returns, and ProcessPoolExecutor counts the calls moved to its call queue as "
        "started; a pools worker may not have run yet, and then all 50 are cancelled, which "
        "concurrent.futures allows (calls not started are cancelled). Timing, 1 run in 3 here"
    ),
    ("ProcessPoolForkserverFailingInitializerTest", "test_initializer"): _LOGGED,
}
for _name in [
    "test_crash_at_task_unpickle",
    "test_crash_during_func_exec_on_worker",
    "test_crash_during_result_pickle_on_worker",
    "test_error_at_task_pickle",
    "test_error_at_task_unpickle",
    "test_error_during_func_exec_on_worker",
    "test_error_during_result_pickle_on_worker",
    "test_error_during_result_unpickle_in_result_handler",
    "test_exit_at_task_unpickle",
    "test_exit_during_func_exec_on_worker",
    "test_exit_during_result_pickle_on_worker",
    "test_exit_during_result_unpickle_in_result_handler",
    "test_shutdown_deadlock",
    "test_shutdown_deadlock_pickle",
]:
    NOT_APPLICABLE[("ProcessPoolForkserverExecutorDeadlockTest", _name)] = _CRASH

#: the suite's test classes that run, to bound the run time (about 65 s of tests in all): every
#: thread-pool class; of the process-pool ones (forkserver), those about the executor
#: itself. Left out: the process variants of WaitTest and AsCompletedTest (they test
#: concurrent.futures.wait and as_completed over futures, which the thread variants
#: cover, with 30 s of sleeps), the fork and spawn variants (the same tests under
#: other start methods), and FutureTests (Future alone, no executor).
CLASSES = (
    "ThreadPoolAsCompletedTest",
    "ThreadPoolExecutorTest",
    "ThreadPoolFailingInitializerTest",
    "ThreadPoolInitializerTest",
    "ThreadPoolShutdownTest",
    "ThreadPoolWaitTests",
    "ProcessPoolForkserverExecutorDeadlockTest",
    "ProcessPoolForkserverFailingInitializerTest",
    "ProcessPoolForkserverInitializerTest",
    "ProcessPoolForkserverProcessPoolExecutorTest",
    "ProcessPoolForkserverProcessPoolShutdownTest",
)


class _TimedResult(unittest.TextTestResult):
    """Prints each test's duration (to see where the run's time goes)."""

    def startTest(self, test: unittest.TestCase) -> None:
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        self.stream.write(f"  [{time.monotonic() - self._t0:.2f}s]\n")


def _link_suite(suite_dir: str) -> str:
    """A directory whose only entry is a link to the suite's ``test`` package (removed
    at exit)."""
    where = tempfile.mkdtemp(prefix="poolbench-cpython-suite-")
    os.symlink(os.path.join(suite_dir, "test"), os.path.join(where, "test"))
    atexit.register(shutil.rmtree, where, True)
    return where


def _executor_types() -> tuple[type, type]:
    import pools

    class ThreadExecutor(pools.Executor):
        def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "", **options: Any) -> None:
            if thread_name_prefix:
                options["name"] = thread_name_prefix
            super().__init__("thread", max_workers=max_workers, **options)

    class ProcessExecutor(pools.Executor):
        def __init__(
            self,
            max_workers: int | None = None,
            mp_context: Any = None,
            max_tasks_per_child: int | None = None,
            **options: Any,
        ) -> None:
            if mp_context is not None:
                options["start_method"] = mp_context.get_start_method()
            if max_tasks_per_child is not None:
                options["max_tasks_per_worker"] = max_tasks_per_child
            super().__init__("process", max_workers=max_workers, **options)

    return ThreadExecutor, ProcessExecutor


# The workers unpickle the suite's job functions, which imports its module: in the
# forkserver (which preloads this script as __mp_main__) it is imported once for all.
if __name__ == "__mp_main__":
    try:
        import test.test_concurrent_futures  # noqa: F401
    except ImportError:
        pass


def main(suite_dir: str, summary_path: str, shard_of: str | None = None) -> int:
    sys.path.insert(0, _link_suite(suite_dir))
    # The forkserver and spawned workers import the suite's module too (its job
    # functions are pickled by reference): they inherit this path.
    os.environ["PYTHONPATH"] = os.pathsep.join([sys.path[0], os.environ.get("PYTHONPATH", "")])
    import test.test_concurrent_futures as suite

    thread_type, process_type = _executor_types()
    suite.ThreadPoolMixin.executor_type = thread_type
    suite.ProcessPoolForkserverMixin.executor_type = process_type

    loader = unittest.TestLoader()
    tests = unittest.TestSuite()
    not_applicable: dict[str, str] = {}
    missing = sorted(set(CLASSES) - set(vars(suite)))
    if missing:
        raise SystemExit(f"the suite at {suite_dir} has no {', '.join(missing)}: another version?")
    shard, shards = (int(n) for n in (shard_of or "0/1").split("/"))
    every = [(name, test_name) for name in CLASSES for test_name in loader.getTestCaseNames(getattr(suite, name))]
    for name, test_name in every[shard::shards]:  # still grouped by class: each set up once a shard
        cls = getattr(suite, name)
        why = NOT_APPLICABLE.get((name, test_name)) or NOT_APPLICABLE.get(("*", test_name))
        if why is not None:
            not_applicable[f"{name}.{test_name}"] = why
            setattr(cls, test_name, unittest.skip(f"not applicable: {why}")(getattr(cls, test_name)))
        tests.addTest(cls(test_name))

    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=_TimedResult).run(tests)
    skipped_by_suite = {t.id(): why for t, why in result.skipped if not why.startswith("not applicable: ")}
    failed = [t.id() for t, _ in result.failures + result.errors + result.unexpectedSuccesses]
    summary = {
        "ran": result.testsRun,
        "passed": result.testsRun
        - len(result.failures)
        - len(result.errors)
        - len(result.skipped)
        - len(result.unexpectedSuccesses),
        "failed": failed,
        "not_applicable": not_applicable,
        "skipped_by_suite": skipped_by_suite,
    }
    with open(summary_path, "w") as out:
        json.dump(summary, out, indent=1)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
