import contextlib
import importlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from pools import _compiled


@pytest.fixture(autouse=True)
def _no_leaks(leak_check):
    """Every test must leave no thread, process, asyncio task or open pool behind."""
    return


@contextlib.contextmanager
def as_users_run() -> Iterator[None]:
    """Inside, processes started run the pools as a user's run does: compiled where
    they are built, even in `make test`'s pure pass. For the harness's end-to-end runs,
    whose measurements run in other processes: that pass measures coverage, the
    pools' own lines are covered by their own tests, and traced pure pools in every
    measurement made those runs twice as slow. (A process pool started in this process
    inside would start the process-wide fork server with compiled modules: none does.)"""
    for name in _compiled.HOT:  # this process keeps the modules it runs, whichever
        importlib.import_module(f"pools.{name}")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv(_compiled.PURE_ENV, raising=False)
        yield


@pytest.fixture
def harness_as_users_run():
    with as_users_run():
        yield


def once_for_all_workers(request, tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A directory that ``make(directory)`` fills once for the whole session, however
    many xdist workers ask for it: the first makes it under a file lock, the others
    wait and find it made (pytest-xdist's documented recipe). For expensive, read-only
    fixtures: each worker would otherwise make its own, all at once on 2 cores. A
    ``make`` that failed left no mark: the next worker starts it again, afresh."""
    root = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker (the environment would reach subprocesses)
        root = root.parent  # the session's directory, above every worker's own
    directory = root / name
    with FileLock(f"{directory}.lock"):
        done = directory / ".made"
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            make(directory)
            done.touch()
    return directory
