"""The named job types: validation that names the field, and every type on every backend."""

import random

import pytest

import pools
from scenarios import jobtypes

T = 30.0


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("sleep", {}, ["'ms'", "required"]),
        ("sleep", {"ms": -1}, ["'ms'", "greater than or equal to 0", "-1"]),
        ("sleep", {"ms": "5"}, ["'ms'", "number", "'5'"]),
        ("cpu", {"ms": 1e9}, ["'ms'", "60000"]),
        ("fail", {"probability": 2}, ["'probability'", "2"]),
        ("heavy_tail", {"alpha": 1}, ["'alpha'", "greater than 1", "1"]),
        ("echo", {"valu": 1}, ["'valu'", "value"]),
        ("nope", {}, ["'nope'", "noop", "heavy_tail"]),
        ("noop", [1], ["'data'", "object"]),
    ],
)
def test_bad_parameters_name_the_field_and_the_constraint(name, data, words):
    with pytest.raises(pools.InvalidArgument) as info:
        jobtypes.validate(name, data)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_defaults_are_filled_in():
    assert jobtypes.validate("fail", {}) == {"probability": 1.0, "ms": 0.0}
    assert jobtypes.validate("heavy_tail") == {"alpha": 1.5, "scale_ms": 1.0, "max_ms": 1000.0}


def test_pareto_durations_are_bounded_and_heavy_tailed():
    rng = random.Random(7)
    draws = sorted(jobtypes.pareto_ms(1.5, 1.0, 1000.0, rng) for _ in range(20000))
    assert draws[0] >= 1.0 and draws[-1] <= 1000.0
    median, p99 = draws[10000], draws[19800]
    assert 1.5 < median < 1.7  # 2 ** (1 / 1.5) = 1.587
    assert 18 < p99 < 26  # the tail: p99 = 100 ** (1 / 1.5) = 21.5, 13.5x the median


def test_every_type_runs_on_every_backend(make_pool, pool_backend):
    pool = make_pool(workers=2)
    cases = {
        "noop": ({}, None),
        "echo": ({"value": [1, "a"]}, [1, "a"]),
        "sleep": ({"ms": 1}, 1.0),
        "cpu": ({"ms": 2}, None),
        "heavy_tail": ({"max_ms": 5}, None),
    }
    for name, (data, expected) in cases.items():
        got = pool.submit(jobtypes.job_for(pool, name), jobtypes.validate(name, data)).result(T)
        if expected is not None:
            assert got == expected, name
    assert pool.submit(jobtypes.job_for(pool, "cpu"), {"ms": 2}).result(T) > 0
    with pytest.raises(jobtypes.JobTypeFailure):
        pool.submit(jobtypes.job_for(pool, "fail"), jobtypes.validate("fail", {})).result(T)
    assert pool.submit(jobtypes.job_for(pool, "fail"), jobtypes.validate("fail", {"probability": 0})).result(T) == "ok"


@pytest.mark.parametrize("name", ["sleep", "cpu", "heavy_tail", "fail"])
def test_thread_jobs_give_their_thread_back_when_timed_out(make_pool, name):
    pool = make_pool("thread", workers=1)
    data = {
        "sleep": {"ms": 60000},
        "cpu": {"ms": 60000},
        "fail": {"ms": 60000, "probability": 0},
        "heavy_tail": {"scale_ms": 60000, "max_ms": 60000},
    }[name]
    job = pool.submit(jobtypes.job_for(pool, name), jobtypes.validate(name, data), timeout=0.05)
    with pytest.raises(pools.JobTimeout):
        job.result(T)
    report = pool.shutdown(timeout=T)
    assert report.abandoned_threads == 0 and pool.abandoned == 0
