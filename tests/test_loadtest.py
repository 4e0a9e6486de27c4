"""The load tests: the pure parts in-process, and one short distributed locust run.

locust (and gevent) are never imported here: ``poolbench loadtest`` runs them in
their own processes, and the service in another.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loadtests import profiles
from loadtests.orchestrator import parse_mix
from loadtests.results import parse_metrics, read_stats
from poolbench._cliargs import duration
from scenarios import jobtypes

EXAMPLES = {name: jt.example for name, jt in jobtypes.BUILTIN.items()}


def test_a_mix_names_types_and_weights():
    mix = profiles.parse_mix("noop:4,sleep:3,cpu", EXAMPLES)
    assert [(e.type, e.weight) for e in mix] == [("noop", 4.0), ("sleep", 3.0), ("cpu", 1.0)]
    assert mix[1].body() == {"type": "sleep", "data": {"ms": 10}}
    custom = profiles.parse_mix('[{"type": "sleep", "data": {"ms": 50}, "timeout": 0.02, "retries": 1}]', EXAMPLES)
    assert custom[0].body() == {"type": "sleep", "data": {"ms": 50}, "timeout": 0.02, "retries": 1}
    assert profiles.mix_from_env(profiles.mix_to_env(custom)) == custom


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("nope:1", ["'nope'", "noop", "--jobtypes"]),
        ('[{"type": "nope"}]', ["'nope'", "noop"]),
        ('[{"type": "noop", "wieght": 2}]', ["'wieght'", "weight"]),
        ("noop:x", ["weight", "'x'"]),
        ("noop:0", ["> 0"]),
        ("", ["empty"]),
    ],
)
def test_a_bad_mix_is_refused_with_the_reason(spec, words):
    with pytest.raises(ValueError, match=r"\S") as info:  # the words are checked below
        profiles.parse_mix(spec, EXAMPLES)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ('[{"type": "sleep", "data": {"ms": -1}}]', ["'sleep'", "'ms'", "greater than or equal to 0"]),
        ('[{"type": "sleep", "data": {}}]', ["'sleep'", "'ms'", "required", "JSON mix"]),
    ],
)
def test_a_mix_is_checked_by_the_job_types_models(spec, words):
    with pytest.raises(ValueError, match=r"\S") as info:
        parse_mix(spec, jobtypes.BUILTIN)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_the_shapes():
    assert [profiles.users_at("steady", t, 10, 10) for t in (0, 5, 9.9, 10)] == [10, 10, 10, None]
    assert [profiles.users_at("ramp", t, 10, 10) for t in (0, 4.5, 9.5)] == [1, 5, 10]
    assert [profiles.users_at("spike", t, 10, 10) for t in (0, 4, 5.9, 6, 9)] == [2, 10, 10, 2, 2]
    assert profiles.users_at("overload", 3, 7, 10) == 7


def test_capacity_follows_workers_sleeps_and_the_gil():
    sleep = profiles.parse_mix("sleep", EXAMPLES)  # 10 ms each
    assert profiles.estimate_capacity(sleep, "thread", 8, 2) == pytest.approx(8 * 1000 / 10.05)
    cpu = profiles.parse_mix('[{"type": "cpu", "data": {"ms": 10}}]', EXAMPLES)
    assert profiles.estimate_capacity(cpu, "thread", 8, 2) == pytest.approx(1000 / 10.05)  # one core
    assert profiles.estimate_capacity(cpu, "process", 8, 2) == pytest.approx(2 * 1000 / 10.05)
    tail = profiles.parse_mix(
        '[{"type": "heavy_tail", "data": {"alpha": 1.5, "scale_ms": 1, "max_ms": 1000}}]', EXAMPLES
    )
    assert 2.5 < profiles.mean_ms(tail[0])[0] < 3.0  # 3 * (1 - 1000 ** -0.5) + 1000 ** -0.5, plus overhead


@pytest.mark.parametrize(("text", "seconds"), [("30", 30), ("30s", 30), ("2m", 120), ("1m30s", 90), ("1h", 3600)])
def test_durations(text, seconds):
    assert duration(text) == seconds


def test_a_short_distributed_run_counts_503s_as_back_pressure(tmp_path):
    """One master and two locust workers overload a tiny pool (1 worker, 100 ms jobs,
    5 waiting: ~10 jobs/s) at twice its capacity for 6 s: the queue fills, the service
    answers 503, and nothing fails."""
    cmd = [
        sys.executable,
        "-m",
        "poolbench",
        "loadtest",
        "--backend",
        "thread",
        "--workers",
        "1",
        "--queue-size",
        "5",
        "--mix",
        '[{"type": "sleep", "data": {"ms": 100}}]',
        "--shape",
        "overload",
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--duration",
        "6s",
        "--locust-workers",
        "2",
        "--results-dir",
        str(tmp_path),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    (out,) = tmp_path.iterdir()
    assert out.name.endswith("-thread")
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(out.glob("*.log")))
    assert run.returncode == 0, run.stdout + run.stderr + logs

    summary = json.loads((out / "summary.json").read_text())
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "report.html", "metrics.txt"):
        assert (out / name).stat().st_size > 0, name
    requests = summary["requests"]
    assert requests["total"] > 0 and requests["accepted_202"] > 0
    assert requests["backpressure_503"] > 0, "the overload produced no 503"
    assert requests["failures"] == 0
    assert all(r["failures"] == 0 for r in read_stats(out / "locust_stats.csv"))
    assert (out / "locust_failures.csv").read_text().count("\n") == 1  # the header only
    assert [p["role"] for p in summary["locust"]["processes"]] == ["master", "worker-1", "worker-2"]
    assert all(p["exit_code"] == 0 for p in summary["locust"]["processes"])
    service = summary["service"]
    assert service["exit_code"] == 0 and service["drain"]["lost"] == 0
    assert service["pool"]["rejected_total"] >= requests["backpressure_503"]  # a stop may cut a reply short
    assert summary["jobs"]["succeeded"]["count"] > 0
    assert parse_metrics((out / "metrics.txt").read_text())["poolbench_pool_workers"] == 1.0
