"""Every answer of the report turns with its data. Each question is fed runs built
to contradict one another (a real SQLite file through scenarios.store, as a run
writes it): the sentence must say "faster" for one and "slower" for the other,
"grew" or "shrank", "caught" or "missed", and "no significant difference" when
the two sides are the same. And no string of reports/questions.py may state a
direction by itself: only the words given to versus() and said() can."""

from __future__ import annotations

import ast
import functools
import json
import pathlib
import re

import pytest

from reports import questions
from reports.data import load_run
from scenarios import runner, spec, store
from scenarios.result import Result

REPEATS = 5  # the fewest with which Mann-Whitney can show a difference at 5%
SAME = "not significantly different from"
NO_DIFFERENCE = "no significant difference, Mann–Whitney p=1.00"


@functools.cache
def _meta() -> dict:
    return runner.metadata(runner.RunOptions(db="unused.db"))


def _params(scenario: str, variant: str = "", **changes) -> dict:
    case = next(c for c in spec.cases(spec.builtin()[scenario]) if c.variant == variant)
    return case.scenario.changed(**changes).model_dump(mode="json")


def make_run(tmp_path, rows, *, bench: dict | None = None):
    """A finished run holding ``rows``: (scenario, variant, backend, fields(repeat),
    params), one measurement per repeat; returns its RunData."""
    db = str(tmp_path / "answers.db")
    conn = store.connect(db)
    backends = list(dict.fromkeys(r[2] for r in rows))
    scenarios = list(dict.fromkeys(r[0] for r in rows))
    run_id = store.create_run(
        conn, {**_meta(), "implementations": backends, "scenarios": scenarios, "repeats": REPEATS}
    )
    seq = 0
    for rep in range(REPEATS):
        for scenario, variant, backend, fields, params in rows:
            # findings as plain data, as a measurement's process writes them: the store
            # decodes them into the experiment's dataclass
            result = Result(**({"jobs": 1000, "completed": 1000} | fields(rep)))
            store.add_measurement(
                conn,
                run_id,
                scenario=scenario,
                variant=variant,
                implementation=backend,
                repeat=rep,
                seq=seq,
                result=result,
                params=params,
            )
            seq += 1
    store.add_control(conn, run_id, 0, 0.3)
    store.finish_run(conn, run_id, finished_at="2025-01-01T00:00:00+00:00", control_median_s=0.3, control_drift=0.0)
    conn.close()
    bench_path = None
    if bench is not None:
        bench_path = tmp_path / "bench.json"
        bench_path.write_text(json.dumps(bench))
    return load_run(db, run_id, loadtests_dir=str(tmp_path / "none"), benchmarks_path=str(bench_path or "none"))


def near(value: float):
    """Five repeats around ``value``, spread by 1% each: distinct, so that two such
    series a factor apart are significantly different and two equal ones are not."""
    return lambda rep: value * (1 + rep / 100)


def metric(column: str, value: float, **more):
    return lambda rep: {column: near(value)(rep), **{k: near(v)(rep) for k, v in more.items()}}


def answer_of(question, data) -> str:
    q = question(data)
    assert not q.missing, q.missing
    return q.answer


# ---------------------------------------------------------------- throughput: cpu, io


@pytest.mark.parametrize("scenario", ["cpu", "io"])
@pytest.mark.parametrize(("thread", "process"), [(2000, 1000), (1000, 2000)], ids=["thread-wins", "process-wins"])
def test_throughput_names_the_winner_the_data_has(tmp_path, scenario, thread, process):
    params = _params(scenario)
    data = make_run(
        tmp_path,
        [
            (scenario, "", "thread", metric("throughput", thread), params),
            (scenario, "", "process", metric("throughput", process), params),
        ],
    )
    text = answer_of(questions.q_cpu if scenario == "cpu" else questions.q_io, data)
    job = "1 ms CPU jobs" if scenario == "cpu" else "1 ms sleep (I/O-like) jobs"
    winner, other = ("thread", "process") if thread > process else ("process", "thread")
    assert f"{winner} had the highest median throughput on {job}: 2,040 jobs/s (95% CI" in text, text
    assert f"{winner} was faster than {other} (2.00×;" in text and "significant, Mann–Whitney p=0.008" in text
    assert "closed loop" in text  # from the stored scenario


@pytest.mark.parametrize(
    ("process", "word"),
    [(500, "slower than"), (1500, "faster than"), (1000, SAME)],
    ids=["slower", "faster", "same"],
)
def test_throughput_turns_with_the_data_between_two_losers(tmp_path, process, word):
    # asyncio wins; the CPU question also compares process with thread, whichever way
    params = _params("cpu")
    data = make_run(
        tmp_path,
        [
            ("cpu", "", "asyncio", metric("throughput", 4000), params),
            ("cpu", "", "thread", metric("throughput", 1000), params),
            ("cpu", "", "process", metric("throughput", process), params),
        ],
    )
    text = answer_of(questions.q_cpu, data)
    assert f"process was {word} thread" in text, text
    if word == SAME:
        assert NO_DIFFERENCE in text


def test_throughput_says_no_significant_difference_for_equal_backends(tmp_path):
    params = _params("cpu")
    rows = [("cpu", "", b, metric("throughput", 1000), params) for b in ("thread", "process")]
    text = answer_of(questions.q_cpu, make_run(tmp_path, rows))
    assert f"was {SAME}" in text and NO_DIFFERENCE in text and "faster" not in text


def test_throughput_says_how_the_jobs_arrived(tmp_path):
    params = _params("io", arrival="poisson", load=0.7)
    rows = [("io", "", b, metric("throughput", 1000), params) for b in ("thread", "asyncio")]
    text = answer_of(questions.q_io, make_run(tmp_path, rows))
    assert "open loop, Poisson arrivals at 0.7× capacity" in text and "closed loop" not in text


# ---------------------------------------------------------------- overhead


def _bench(thread_s: float, tpe_s: float) -> dict:
    return {
        "datetime": "2025-01-01T00:00:00",
        "commit_info": {"id": "abc", "dirty": False},
        "benchmarks": [
            {
                "group": "noop",
                "name": name,
                "extra_info": {"backend": backend, "jobs": 500},
                "stats": {"median": m, "rounds": 5, "data": [m * (1 + i / 100) for i in range(5)]},
            }
            for name, backend, m in (("test_noop[thread]", "thread", thread_s), ("tpe", "ThreadPoolExecutor", tpe_s))
        ],
    }


@pytest.mark.parametrize(
    ("thread_s", "tpe_s", "word", "cheaper"),
    [
        (0.004, 0.006, "higher than", "faster than"),
        (0.006, 0.004, "lower than", "slower than"),
        (0.005, 0.005, SAME, SAME),
    ],
    ids=["ours-faster", "ours-slower", "same"],
)
def test_overhead_turns_with_the_data(tmp_path, thread_s, tpe_s, word, cheaper):
    params = _params("noop")
    # the pool scenario: thread against process the same way as the micro-benchmark
    rows = [
        ("noop", "", "thread", metric("throughput", 1 / thread_s), params),
        ("noop", "", "process", metric("throughput", 1 / tpe_s), params),
    ]
    text = answer_of(questions.q_overhead, make_run(tmp_path, rows, bench=_bench(thread_s, tpe_s)))
    assert f"the thread pool's jobs/s were {word} those of concurrent.futures.ThreadPoolExecutor" in text, text
    if cheaper == SAME:
        assert "handled no-ops at a rate not significantly different from" in text and NO_DIFFERENCE in text
    else:
        assert "handled no-ops faster than" in text  # the cheapest against the other: faster by construction


# ---------------------------------------------------------------- breakdown


@pytest.mark.parametrize(
    ("arrival", "says"),
    [
        ({}, "(closed loop, queue_size 100): in a closed loop the queue wait is the backlog"),
        (
            {"arrival": "poisson", "load": 0.9},
            "(open loop, Poisson arrivals at 0.9× capacity, queue_size 100): in an open loop it is the queueing",
        ),
    ],
    ids=["closed", "open"],
)
def test_breakdown_explains_the_queue_wait_by_how_jobs_arrived(tmp_path, arrival, says):
    params = _params("cpu", **arrival)
    parts = metric("throughput", 1000, queue_wait_ms=5.0, dispatch_ms=0.1, run_ms=1.0, return_ms=0.05)
    rows = [("cpu", "", b, parts, params) for b in ("thread", "process")]
    text = answer_of(questions.q_breakdown, make_run(tmp_path, rows))
    assert says in text, text


# ---------------------------------------------------------------- workers


@pytest.mark.parametrize(
    ("at_4", "word"),
    [
        (3000, "grew (3.00×, 75% of linear;"),
        (500, "shrank (0.50×, 12% of linear;"),
        (1000, "did not change significantly (1.00×"),
    ],
    ids=["grew", "shrank", "same"],
)
def test_workers_sweep_says_grew_or_shrank_from_the_data(tmp_path, at_4, word):
    rows = [
        ("workers_sweep", "workers=1", "thread", metric("throughput", 1000), _params("workers_sweep", "workers=1")),
        ("workers_sweep", "workers=4", "thread", metric("throughput", at_4), _params("workers_sweep", "workers=4")),
    ]
    text = answer_of(questions.q_workers, make_run(tmp_path, rows))
    assert f"From 1 to 4 workers, the throughput of 1 ms sleep (I/O-like) jobs: on thread it {word}" in text, text
    if at_4 == 1000:
        assert NO_DIFFERENCE in text


# ---------------------------------------------------------------- saturation


def _saturation_rows(served_share: dict[float, float]):
    rows = []
    for load, share in served_share.items():
        variant = f"load={float(load)}"
        offered = 1000 * load
        rows.append(
            (
                "saturation",
                variant,
                "thread",
                metric("throughput", offered * share, offered_rate=offered),
                _params("saturation", variant),
            )
        )
    return rows


@pytest.mark.parametrize(
    ("served", "says", "not_said"),
    [
        ({0.5: 1.0, 1.0: 1.0, 2.0: 0.5}, "kept up with the offered load at every load up to 1× capacity", "again"),
        # the last load that kept up is not "up to" when a lower one did not
        (
            {0.5: 0.5, 1.0: 1.0, 2.0: 0.5},
            "did not keep up even at the lowest offered load; at 0.5× it served 255 of 510 jobs/s offered (50%), "
            "rejecting 0%; it kept up again at 1×",
            "up to",
        ),
        ({0.5: 1.0, 1.0: 0.6, 2.0: 1.0}, "up to 0.5× capacity (510 jobs/s); at 1× it served", "up to 2×"),
    ],
    ids=["knee", "missed-at-the-lowest", "knee-then-again"],
)
def test_saturation_keeps_up_only_to_the_first_load_it_missed(tmp_path, served, says, not_said):
    text = answer_of(questions.q_saturation, make_run(tmp_path, _saturation_rows(served)))
    assert says in text and not_said not in text, text


# ---------------------------------------------------------------- queue sweep


@pytest.mark.parametrize(
    ("rejected_at_64", "p99_at_64", "rej_word", "p99_word"),
    [(20, 50.0, "fell", "rose"), (400, 2.0, "rose", "fell"), (200, 10.0, "did not change significantly", None)],
    ids=["buffer-helps", "buffer-hurts", "same"],
)
def test_queue_sweep_turns_with_the_data(tmp_path, rejected_at_64, p99_at_64, rej_word, p99_word):
    rows = [
        (
            "queue_sweep",
            "queue_size=0",
            "thread",
            metric("throughput", 1000, rejected=200, lat_p99_ms=10.0),
            _params("queue_sweep", "queue_size=0"),
        ),
        (
            "queue_sweep",
            "queue_size=64",
            "thread",
            metric("throughput", 1000, rejected=rejected_at_64, lat_p99_ms=p99_at_64),
            _params("queue_sweep", "queue_size=64"),
        ),
    ]
    text = answer_of(questions.q_queue, make_run(tmp_path, rows))
    assert f"from queue_size=0 to 64 the share of jobs rejected {rej_word} (" in text, text
    assert f"and p99 latency {p99_word or 'did not change significantly'} (" in text
    if p99_word is None:
        assert NO_DIFFERENCE in text


# ---------------------------------------------------------------- overload


@pytest.mark.parametrize(
    ("reject_p99", "word"), [(5.0, "lower than"), (80.0, "higher than"), (40.0, SAME)], ids=["lower", "higher", "same"]
)
def test_overload_compares_reject_with_block_from_the_data(tmp_path, reject_p99, word):
    rows = [
        (
            "overload",
            f"overflow={policy}",
            "thread",
            metric("throughput", 1000, lat_p99_ms=p99, rejected=rej),
            _params("overload", f"overflow={policy}"),
        )
        for policy, p99, rej in (("block", 40.0, 0), ("reject", reject_p99, 300), ("block-wait", 20.0, 100))
    ]
    text = answer_of(questions.q_overload, make_run(tmp_path, rows))
    assert f"thread: reject's p99 latency was {word} block's (" in text, text
    if word == SAME:
        assert NO_DIFFERENCE in text
    assert "block-wait waits at most 10 ms" in questions.q_overload(make_run(tmp_path / "again", rows)).caption


# ---------------------------------------------------------------- priority


def _priority_rows(p99_hi: float, p99_lo: float):
    def fields(rep):
        return {
            "throughput": 500.0,
            "findings": {
                "queue_wait_ms_by_priority": {
                    "0": {"p50": 1.0, "p99": near(p99_lo)(rep)},
                    "10": {"p50": 0.5, "p99": near(p99_hi)(rep)},
                }
            },
        }

    return [("priority", "", "thread", fields, _params("priority"))]


@pytest.mark.parametrize(
    ("p99_hi", "word"),
    [(2.0, "shorter than"), (100.0, "longer than"), (50.0, SAME)],
    ids=["overtakes", "waits-longer", "same"],
)
def test_priority_says_shorter_or_longer_from_the_data(tmp_path, p99_hi, word):
    text = answer_of(questions.q_priority, make_run(tmp_path, _priority_rows(p99_hi, 50.0)))
    assert f"thread: the queue wait of priority 10 (20% of jobs) was {word} that of priority 0 (" in text, text
    assert "waited in the queue less" not in text
    if word == SAME:
        assert NO_DIFFERENCE in text


# ---------------------------------------------------------------- cancel


def _cancel_rows(p50: dict[str, float], kept: dict[str, int | None]):
    rows = []
    for backend, v in p50.items():

        def fields(rep, v=v, backend=backend):
            findings = {
                "cancel_ms": {"p50": near(v)(rep), "p99": 2 * v, "n": 5},
                "timeout_overshoot_ms": {"p50": 0.5, "p99": 1.0, "n": 5},
            }
            if kept[backend] is not None:
                findings.update(kept_running=kept[backend], probes=10, stop="cooperative")
            else:  # a run made before the probes: only the backend's declared capability
                findings.update(stops_running_jobs=False)
            return {"findings": findings}

        rows.append(("cancel_latency", "", backend, fields, _params("cancel_latency")))
    return rows


def test_cancel_says_whether_the_function_stopped_from_the_probes(tmp_path):
    data = make_run(tmp_path, _cancel_rows({"thread": 1.0, "asyncio": 3.0}, {"thread": 0, "asyncio": 2}))
    text = answer_of(questions.q_cancel, data)
    assert "thread p50 1.02 ms, p99 2.00 ms — the function itself stopped in all 50 probes" in text, text
    assert (
        "asyncio p50 3.06 ms, p99 6.00 ms — the function itself kept running past its stop in 10 of 50 probes" in text
    )
    assert "a thread cannot be killed" not in text
    assert "of thread, the lowest: faster than asyncio (0.33×;" in text


def test_cancel_says_nothing_of_the_function_without_probes_and_turns_with_latency(tmp_path):
    data = make_run(tmp_path, _cancel_rows({"thread": 3.0, "asyncio": 1.0}, {"thread": None, "asyncio": None}))
    text = answer_of(questions.q_cancel, data)
    assert "keeps running" not in text and "kept running" not in text and "stopped in all" not in text, text
    assert "of asyncio, the lowest: faster than thread" in text
    data = make_run(tmp_path / "same", _cancel_rows({"thread": 2.0, "asyncio": 2.0}, {"thread": 0, "asyncio": 0}))
    text = answer_of(questions.q_cancel, data)
    assert f"the lowest: {SAME}" in text and NO_DIFFERENCE in text


# ---------------------------------------------------------------- primitives


def _primitive_rows(**ops):
    names = {
        "lock": "Lock (Mutex)",
        "rw": "RWLock 90% reads (RWMutex)",
        "rlock": "RLock",
        "queue": "queue.Queue put/get (channel)",
        "simple": "SimpleQueue put/get",
        "count": "itertools.count (atomic add)",
        "thread": "Thread start+join (WaitGroup), per op",
    }

    def fields(rep):
        return {"throughput": 1e6, "findings": {"ops_per_s": {names[k]: near(v)(rep) for k, v in ops.items()}}}

    return [("primitives", "", "thread", fields, _params("primitives"))]


@pytest.mark.parametrize(
    ("rw", "simple", "rw_word", "simple_word"),
    [
        (5e5, 3e6, "slower than", "faster than"),  # the usual way round
        (2e6, 5e5, "faster than", "slower than"),  # and the other
        (1e6, 1e6, SAME, SAME),
    ],
    ids=["usual", "contrary", "same"],
)
def test_primitives_turn_with_the_data(tmp_path, rw, simple, rw_word, simple_word):
    rows = _primitive_rows(lock=1e6, rw=rw, rlock=1e6, queue=1e6, simple=simple, count=1e6, thread=1e4)
    text = answer_of(questions.q_primitives, make_run(tmp_path, rows))
    assert f"a readers-writer lock with 90% reads was {rw_word} a plain Lock (" in text, text
    assert f"SimpleQueue put+get was {simple_word} queue.Queue" in text
    assert f"RLock was {SAME} Lock (1.00×" in text and NO_DIFFERENCE in text
    assert "GIL, readers gain" not in text


# ---------------------------------------------------------------- leaks and the racy pool


@pytest.mark.parametrize(
    ("caught", "left_running", "says"),
    [
        (
            {"pool never shut down": 3, "job ignoring its timeout": 1, "after cleanup": 0},
            1,
            "pool never shut down: caught on thread (3 reported); job ignoring its timeout: caught on thread "
            "(1 reported); after cleanup: nothing left on thread",
        ),
        (
            {"pool never shut down": 0, "job ignoring its timeout": 0, "after cleanup": 2},
            1,
            "pool never shut down: missed on thread (none reported); job ignoring its timeout: missed on thread "
            "(none reported); after cleanup: 2 reported on thread after cleanup",
        ),
        (  # the pool stopped the job itself (a killed process): nothing to catch, nothing missed
            {"pool never shut down": 2, "job ignoring its timeout": 0, "after cleanup": 0},
            0,
            "job ignoring its timeout: nothing to catch on thread, where the pool stopped the job (none reported)",
        ),
    ],
    ids=["caught", "missed", "nothing-to-catch"],
)
def test_leaks_say_caught_or_missed_from_the_data(tmp_path, caught, left_running, says):
    findings = {"caught": caught, "abandoned_threads_reported": left_running}
    rows = [("leaks", "", "thread", lambda rep: {"findings": findings}, _params("leaks"))]
    assert says in answer_of(questions.q_leaks, make_run(tmp_path, rows))


@pytest.mark.parametrize(
    ("caught_by", "says"),
    [
        (["test_priorities", "test_conserved"], "caught the deliberately buggy backend"),
        ([], "caught nothing in the deliberately buggy backend"),
    ],
    ids=["caught", "nothing"],
)
def test_racy_pool_says_caught_or_nothing_from_the_data(tmp_path, caught_by, says):
    summary = f"{len(caught_by)} failed, 40 passed" if caught_by else "42 passed"
    rows = [
        (
            "racy_pool",
            "",
            "thread",
            lambda rep: {"findings": {"caught_by": caught_by, "summary": summary}},
            _params("racy_pool"),
        )
    ]
    text = answer_of(questions.q_racy, make_run(tmp_path, rows))
    assert says in text and (f"failed {len(caught_by)} tests" in text) == bool(caught_by), text


@pytest.mark.parametrize(
    ("with_race", "without", "says"),
    [
        (
            18,
            1,
            "Race mode caught the lost wake-up (a backend that clears its wake-up after looking at the queue) "
            "more often: in 18/20 runs under race mode against 1/20 without",
        ),
        (
            1,
            18,
            "Race mode caught the lost wake-up (a backend that clears its wake-up after looking at the queue) "
            "less often: in 1/20 runs under race mode against 18/20 without",
        ),
        (3, 2, "Race mode made no significant difference to catching the lost wake-up"),
    ],
    ids=["more", "less", "same"],
)
def test_racy_pool_race_mode_odds_follow_the_data(tmp_path, with_race, without, says):
    findings = {
        "caught_by": ["test_conserved"],
        "summary": "1 failed, 40 passed",
        "race_runs": 20,
        "caught_with_race": with_race,
        "caught_without_race": without,
        "race_seed": 1001,
    }
    rows = [("racy_pool", "", "thread", lambda rep: {"findings": findings}, _params("racy_pool"))]
    text = answer_of(questions.q_racy, make_run(tmp_path, rows))
    assert says in text, text
    assert "Its seeds were 1001–1020" in text


# ---------------------------------------------------------------- answers with figures only


def test_retries_timeouts_and_tails_state_figures_not_directions(tmp_path):
    """These answers give the data's figures (and what independent failures would
    predict) without a verdict; their figures follow the data."""

    def fixed(**fields):
        return lambda rep: fields

    rows = [
        ("failing", "", "thread", fixed(throughput=900.0, completed=900, retried=80), _params("failing")),
        ("timeouts", "", "thread", fixed(throughput=900.0, timed_out=150, lat_p99_ms=3.0), _params("timeouts")),
        ("heavy_tail", "", "thread", fixed(throughput=900.0, lat_p50_ms=2.0, lat_p99_ms=20.0), _params("heavy_tail")),
    ]
    data = make_run(tmp_path, rows)
    retries, timeouts, tails = (
        answer_of(q, data) for q in (questions.q_retries, questions.q_timeouts, questions.q_tails)
    )
    assert "jobs succeeded: thread 90.0% (expected 97.3% if failures are independent)" in retries, retries
    assert "jobs timed out: thread 15.0%" in timeouts, timeouts
    assert "heavy_tail: p99/p50 thread 10.0× (p99 20.0 ms)" in tails, tails
    for text in (retries, timeouts, tails):
        assert not DIRECTION.search(text), text


# ---------------------------------------------------------------- the recommendation for the user's workload


def _mine(**changes) -> spec.Scenario:
    base = {"name": "mine", "workload": [{"fn": "mypkg.jobs:resize", "args": [[1]]}], "jobs": 200}
    return spec.parse(base | changes, "test")


def _sweep_rows(tp: dict[str, dict[int, float]], p99: dict[str, dict[int, float]] | None = None, **changes):
    """Rows of scenario "mine" swept over workers: tp[impl][workers] jobs/s (p99 ms likewise)."""
    sc = _mine(sweep={"workers": sorted({w for series in tp.values() for w in series})}, **changes)
    rows = []
    for case in spec.cases(sc):
        w = case.scenario.workers
        params = case.scenario.model_dump(mode="json")
        for impl, series in tp.items():
            lat = (p99 or {}).get(impl, {}).get(w, 10.0)
            rows.append(("mine", case.variant, impl, metric("throughput", series[w], lat_p99_ms=lat), params))
    return rows


def recommendation(data) -> str:
    from reports.recommend import recommend

    rec = recommend(data, "mine")
    assert not rec.missing, rec.missing
    return rec.answer


@pytest.mark.parametrize(
    ("thread", "process", "chosen", "other"),
    [(2000, 1000, "thread", "process"), (1000, 2000, "process", "thread")],
    ids=["thread-wins", "process-wins"],
)
def test_the_recommendation_turns_with_the_data(tmp_path, thread, process, chosen, other):
    rows = _sweep_rows({"thread": {1: thread / 4, 4: thread}, "process": {1: process / 4, 4: process}})
    text = recommendation(make_run(tmp_path, rows))
    assert f"For mypkg.jobs:resize (closed loop, 200 jobs a measurement): use {chosen} with 4 workers." in text, text
    assert f"Throughput: {chosen} with 4 workers had the highest median, 2,040 jobs/s (95% CI" in text
    assert f"it was faster than the runner-up, {other} with 4 workers (2.00×;" in text
    assert "significant, Mann–Whitney p=0.008" in text and "throughput decides" in text
    assert f"Workers: {chosen} reached 90% of its peak throughput (2,040 jobs/s with 4 workers) with 4 workers" in text


def test_the_recommendation_says_no_significant_difference_for_equal_data(tmp_path):
    rows = _sweep_rows({"thread": {1: 500, 4: 1000}, "process": {1: 500, 4: 1000}})
    text = recommendation(make_run(tmp_path, rows))
    assert (
        "use thread with 4 workers or process with 4 workers: the test finds no significant difference between "
        "them, so either serves it."
    ) in text, text
    assert f"it was {SAME} the runner-up, process with 4 workers (1.00×;" in text and NO_DIFFERENCE in text
    assert "faster" not in text and "slower" not in text


def test_the_recommendation_names_the_knee_of_the_workers_sweep(tmp_path):
    rows = _sweep_rows({"thread": {1: 1000, 2: 1900, 4: 2000}, "process": {1: 400, 2: 800, 4: 1600}})
    text = recommendation(make_run(tmp_path, rows))
    assert "use thread with 2 workers." in text, text
    assert "thread reached 90% of its peak throughput (2,040 jobs/s with 4 workers) with 2 workers (the knee" in text
    assert "4 workers against 2: faster than 2 workers (1.05×;" in text  # the last 10%, significant: said


def test_in_an_open_loop_p99_latency_decides(tmp_path):
    # the same throughput (the offered rate), process with a lower p99: process is chosen, and why is said
    rows = _sweep_rows(
        {"thread": {4: 100}, "process": {4: 100}},
        {"thread": {4: 50.0}, "process": {4: 10.0}},
        arrival="poisson",
        rate=100.0,
    )
    text = recommendation(make_run(tmp_path, rows))
    assert "(open loop, Poisson arrivals" in text and "use process with 4 workers." in text, text
    assert "its p99 was lower than that of the runner-up, thread with 4 workers (0.20×;" in text
    assert "p99 latency decides" in text


def test_no_recommendation_without_a_workload_of_the_users(tmp_path):
    from reports.recommend import recommend_all

    rows = [("cpu", "", b, metric("throughput", 1000), _params("cpu")) for b in ("thread", "process")]
    assert recommend_all(make_run(tmp_path, rows)) == []


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("ours", "ratio", "of_ideal", "verdict"),
    [(2000, "2.00×", "1.02× (= 102% of the ideal", "met"), (600, "0.60×", "0.31× (= 31% of the ideal", "NOT met")],
    ids=["met", "missed"],
)
def test_targets_are_checked_against_the_data(tmp_path, ours, ratio, of_ideal, verdict):
    from reports.targets import check_all

    targets = [
        {"impl": "thread", "versus": "ThreadPoolExecutor", "at_least": 1.5},
        {"impl": "thread", "versus": "ideal", "at_least": 0.9},  # 4 workers / 2 ms a job: 2000 jobs/s
        {"impl": "thread", "metric": "lat_p99_ms", "at_most": 20.0},
    ]
    params = _mine(workers=4, target=targets).model_dump(mode="json")
    p99 = 10.0 if ours > 1000 else 40.0

    def thread(rep):
        return {"throughput": near(ours)(rep), "run_ms": 2.0, "lat_p99_ms": p99}

    rows = [
        ("mine", "", "thread", thread, params),
        ("mine", "", "ThreadPoolExecutor", metric("throughput", 1000), params),
    ]
    first, ideal, bound = (c.text for c in check_all(make_run(tmp_path, rows)))
    assert first == (
        f"mine: thread against ThreadPoolExecutor, throughput: {ratio} (95% CI of the per-repeat ratios "
        f"{ratio}–{ratio}; significant, Mann–Whitney p=0.008); target ≥ 1.50×: {verdict}"
    ), first
    assert ideal.startswith(f"mine: thread against ideal, throughput: {of_ideal}: workers / mean run time)"), ideal
    assert ideal.endswith(f"target ≥ 0.90×: {verdict}")
    assert bound == f"mine: thread lat_p99_ms {p99:.1f} ms (median of 5); target ≤ 20.0: {verdict}", bound


# ---------------------------------------------------------------- no canned verdict


DIRECTION = re.compile(
    r"\b(faster|slower|fastest|slowest|quicker|grew|shrank|shorter|longer|less|more|fewer|higher|lower|rose|fell|"
    r"kept|keeps|keep up|caught|missed|stopped|overtook|overtakes|beat|better|worse|cheaper|dearer|improved|trades)\b",
    re.IGNORECASE,
)
PHRASERS = {"versus", "said"}  # reports.analysis: the only places a direction may be worded
PLACEMENT = {"loc", "ha", "va"}  # matplotlib's "lower right" is a place, not a verdict


def _canned_directions(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text())
    allowed: set[int] = set()  # ids of string nodes that are words handed to a phraser
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in PHRASERS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                allowed.update(id(n) for n in ast.walk(arg))
        if isinstance(node, (ast.FunctionDef, ast.Module)) and ast.get_docstring(node) is not None:
            allowed.add(id(node.body[0].value))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Question":
            allowed.update(id(n) for n in ast.walk(node.args[1]))  # the question's title asks, it does not answer
        if isinstance(node, ast.Call):
            allowed.update(id(k.value) for k in node.keywords if k.arg in PLACEMENT)
            if getattr(node.func, "attr", None) == "get":  # a key of the stored data ("caught"), not prose
                allowed.update(id(a) for a in node.args[:1])
        if isinstance(node, ast.Subscript):
            allowed.add(id(node.slice))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed:
            m = DIRECTION.search(node.value)
            if m:
                found.append(f"{path.name}:{node.lineno}: {m.group(0)!r} in {node.value!r}")
    return found


@pytest.mark.parametrize("module", ["questions.py", "external.py", "recommend.py", "targets.py"])
def test_no_answer_states_a_direction_of_its_own(module):
    """A fixed "faster", "grew", "caught" in a sentence is a conclusion written before
    the data: every direction word must be one handed to versus() or said()."""
    path = pathlib.Path(questions.__file__).with_name(module)
    assert _canned_directions(path) == []


def test_the_canned_direction_check_sees_one(tmp_path):
    bad = 'def q(data):\n    return f"jobs of priority {top} waited in the queue less than those of {bottom}"\n'
    good = 'def q(data, r):\n    return f"jobs of priority {top} waited " + versus(r, more="longer than", less="less than")\n'
    for text, expected in ((bad, 1), (good, 0)):
        probe = tmp_path / "probe.py"
        probe.write_text(text)
        assert len(_canned_directions(probe)) == expected, text
