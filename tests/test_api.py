"""The public surface: names, registry, options, the exception hierarchy."""

import concurrent.futures
import dataclasses

import pytest

import pools
from pools import exceptions


def test_public_api_is_explicit():
    assert sorted(pools.__all__) == sorted(
        [
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
    )
    for name in pools.__all__:
        assert getattr(pools, name) is not None


def test_importing_pools_imports_no_backend():
    import subprocess
    import sys

    code = "import sys, pools; print(sorted(m for m in sys.modules if m in ('pools.thread', 'pools.process', 'pools.aio')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_available_backends():
    assert pools.available_backends()[:3] == ("thread", "process", "asyncio")


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(pools.UnknownBackend) as info:
        pools.create_pool("threads")
    msg = str(info.value)
    assert "'threads'" in msg and all(repr(n) in msg for n in ("thread", "process", "asyncio"))
    assert isinstance(info.value, ValueError)


def test_missing_extra_says_what_to_install():
    pools.register_backend("needs-extra", "nowhere:Pool", requires=("surely_not_installed_mod",), extra="demo")
    try:
        assert "needs-extra" not in pools.available_backends()
        assert "needs-extra" in pools.registered_backends()
        with pytest.raises(pools.BackendUnavailable, match=r"pip install 'poolbench\[demo\]'"):
            pools.create_pool("needs-extra")
    finally:
        from pools import _registry

        del _registry._REGISTRY["needs-extra"]


def test_a_registered_backend_is_created_by_name():
    from pools.thread import ThreadBackend

    class Tiny(ThreadBackend):
        name = "tiny"

    pools.register_backend("tiny", Tiny)
    try:
        with pools.create_pool("tiny", workers=1) as pool:
            assert pool.submit(pow, 2, 5).result(10) == 32
            assert pool.backend == "tiny" and isinstance(pool.impl, Tiny)
    finally:
        from pools import _registry

        del _registry._REGISTRY["tiny"]


def test_a_registry_entry_must_be_a_backend():
    with pytest.raises(pools.InvalidArgument, match="Backend subclass"):
        pools.register_backend("bad", dict)
    with pytest.raises(pools.InvalidArgument, match=r"package\.module:BackendClass"):
        pools.register_backend("bad", "no_colon_here")


def test_an_unknown_backend_option_is_named_with_the_valid_ones():
    with pytest.raises(pools.InvalidArgument) as info:
        pools.create_pool("process", start_methd="spawn")
    assert "'start_methd'" in str(info.value) and "start_method" in str(info.value)
    with pytest.raises(pools.InvalidArgument, match="'color'"):
        pools.create_pool("thread", color="red")


def test_pool_names_the_mistakes_of_its_backend_argument():
    with pytest.raises(pools.InvalidArgument, match="first argument"):
        pools.Pool(backend="process")  # type: ignore[call-arg]
    from pools.lowlevel import Backend

    class NoCapabilities(Backend):  # type: ignore[misc]
        name = "nocaps"

    with pytest.raises(pools.InvalidArgument, match="declares no capabilities"):
        pools.Pool(NoCapabilities)
    with pytest.raises(pools.InvalidArgument, match="declares no capabilities"):
        pools.register_backend("nocaps", NoCapabilities)


def test_capabilities_are_one_frozen_value_read_without_starting_the_pool():
    pool = pools.create_pool("process", workers=1)
    caps = pool.capabilities
    assert caps.survives_crashes and caps.runs == "callables" and caps.stops_running_jobs
    assert pool.stats().uptime >= 0 and not pool.closed and pool._state == "new"  # not started
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.survives_crashes = False  # type: ignore[misc]
    pool.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"attempts": 0}, ["attempts", "0"]),
        ({"backoff": -1}, ["backoff", "-1"]),
        ({"backoff": 2, "max_backoff": 1}, ["max_backoff", "1", "2"]),
        ({"on": (ValueError, "x")}, ["on", "'x'"]),
    ],
)
def test_retry_validates(kwargs, words):
    with pytest.raises(pools.InvalidArgument) as info:
        pools.Retry(**kwargs)
    assert all(w in str(info.value) for w in words)


def test_retry_backoff_is_exponential_capped_and_jittered():
    r = pools.Retry(attempts=10, backoff=0.1, max_backoff=1.0, jitter=False)
    assert [r.delay(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    j = pools.Retry(attempts=10, backoff=0.1, max_backoff=1.0, jitter=True)
    for n in range(1, 8):
        full = min(1.0, 0.1 * 2 ** (n - 1))
        assert all(full / 2 <= j.delay(n) <= full for _ in range(50))
    assert pools.Retry(on=KeyError).on == (KeyError,)


def test_exception_hierarchy():
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        if name != "RemoteTraceback":
            assert issubclass(cls, pools.PoolError), name
        assert cls.__doc__, f"{name} needs a docstring saying when it is raised"
    assert issubclass(pools.JobTimeout, TimeoutError)
    assert issubclass(pools.JobCancelled, concurrent.futures.CancelledError)
    assert issubclass(pools.InvalidArgument, ValueError)
    assert issubclass(pools.InvalidCallable, TypeError)
    assert issubclass(pools.PoolClosed, RuntimeError)


def test_errors_survive_pickling_with_their_fields():
    import pickle

    err = pools.WorkerCrashed("died", job_id=7, exitcode=-9, signal_name="SIGKILL", cause="oom")
    back = pickle.loads(pickle.dumps(err))
    assert (back.job_id, back.exitcode, back.signal_name, back.cause, str(back)) == (7, -9, "SIGKILL", "oom", "died")


def test_stats_and_report_are_frozen_dataclasses():
    for cls in (pools.PoolStats, pools.ShutdownReport):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen


def test_current_context_outside_a_job():
    with pytest.raises(pools.NoCurrentJob):
        pools.current_context()
