import contextlib
import importlib
from collections.abc import Iterator

import pytest

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
