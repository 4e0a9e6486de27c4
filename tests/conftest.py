import pytest


@pytest.fixture(autouse=True)
def _no_leaks(leak_check):
    """Every test must leave no thread, process, asyncio task or open pool behind."""
    return
