"""Profiles in the harness: ``poolbench run --profile`` (or a scenario's ``profile =
true``) records a py-spy profile of each case on each implementation, worker processes
included, in a pass of its own; the report draws a flame graph per implementation."""

from __future__ import annotations

from collections import Counter

import pytest
from test_service_debug import needs_py_spy

from reports.flame import flame_svg, short_frame
from reports.html import write_report
from scenarios import runner, spec, store
from scenarios.profiling import by_role, parse_collapsed, top_frames
from scenarios.spec import ScenarioError

RAW = (
    'process 10:"python -m scenarios.measure";main (/x/measure.py:5);submit (/x/pools/_core.py:392) 30\n'
    'process 10:"python -m scenarios.measure";main (/x/measure.py:5);wait (/usr/lib/python3.11/threading.py:327) 10\n'
    'process 10:"python -m scenarios.measure";process 11:"python -c from multiprocessing.forkserver\n'
    'import main; main(1, 2)";_serve_one (/usr/lib/python3.11/multiprocessing/forkserver.py:313);'
    "noop (/x/scenarios/jobtypes.py:20) 20\n"
    'process 10:"python -m scenarios.measure";process 12:"python -c from multiprocessing.forkserver\n'
    'import main; main(1, 2)";_serve_one (/usr/lib/python3.11/multiprocessing/forkserver.py:313);'
    "noop (/x/scenarios/jobtypes.py:20) 40\n"
)


def test_collapsed_stacks_by_role_merge_the_workers_and_give_the_top_frames():
    stacks = parse_collapsed(by_role(RAW, 10))
    assert stacks == Counter(
        {
            ("[this process]", "main (/x/measure.py:5)", "submit (/x/pools/_core.py:392)"): 30,
            ("[this process]", "main (/x/measure.py:5)", "wait (/usr/lib/python3.11/threading.py:327)"): 10,
            (
                "[child process]",
                "_serve_one (/usr/lib/python3.11/multiprocessing/forkserver.py:313)",
                "noop (/x/scenarios/jobtypes.py:20)",
            ): 60,  # two workers, one stack
        }
    )
    top = top_frames(stacks, 2)
    assert [(short_frame(t.frame), round(t.self_share, 2)) for t in top] == [
        ("noop (jobtypes.py:20)", 0.6),
        ("submit (_core.py:392)", 0.3),
    ]
    assert top[0].total_share == pytest.approx(0.6)


def test_a_frame_read_mid_change_holding_a_nul_keeps_its_stacks_role():
    # py-spy samples without pausing the process: a frame it read mid-change may hold
    # any byte, NUL included, which the role marking used as its delimiter (seen: a
    # root "[child process] (\x01:1617655200)").
    raw = 'process 10:"python -m scenarios.measure";process 11:"python -c x";ju\x0011\x00nk (\x01:1617655200) 5\n'
    assert parse_collapsed(by_role(raw, 10)) == Counter({("[child process]", "ju11nk (\x01:1617655200)"): 5})


def test_flame_svg_draws_each_frame_by_its_share():
    stacks = parse_collapsed(by_role(RAW, 10))
    svg = flame_svg(stacks, "noop on process: 100 samples")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "noop (jobtypes.py:20) — 60 samples (60.0%)" in svg
    assert "submit (_core.py:392) — 30 samples (30.0%)" in svg
    assert 'width="540.0"' in svg  # 60% of the 900 px
    assert flame_svg(Counter(), "empty") == ""


def test_profile_names_must_be_scenarios_of_the_run(tmp_path):
    opts = runner.RunOptions(scenarios=["noop"], implementations=["thread"], profile=["cpu"], db=str(tmp_path / "x.db"))
    with pytest.raises(ScenarioError, match="--profile names scenario 'cpu', which this run does not have"):
        runner.plan(opts)


def test_a_scenario_file_can_ask_for_its_profile():
    sc = spec.parse({"name": "mine", "workload": [{"type": "noop"}], "jobs": 10, "profile": True}, "test")
    other = spec.parse({"name": "other", "workload": [{"type": "noop"}], "jobs": 10}, "test")
    opts = runner.RunOptions(scenarios=[sc, other], implementations=["thread"])
    work = runner.plan(opts)
    assert [c.case.scenario.name for c in runner.profiled(opts, work)] == ["mine"]
    opts.profile = True
    assert len(runner.profiled(opts, work)) == 2
    assert runner.count_steps(work, 1, opts) == runner.count_steps(work, 1) + 2


@needs_py_spy
def test_run_profile_records_each_implementation_workers_included_and_the_report_draws_them(tmp_path):
    db = str(tmp_path / "p.db")
    opts = runner.RunOptions(
        scenarios=["noop"], implementations=["thread", "process"], quick=True, repeats=1, db=db, profile=True
    )
    run_id = runner.run(opts)
    profiles = store.load_profiles(db, run_id)
    assert sorted(profiles.implementation) == ["process", "thread"], profiles.error.tolist()
    by_impl = {r.implementation: r for r in profiles.itertuples()}
    for impl, row in by_impl.items():
        assert row.error is None and row.samples > 0, (impl, row.error)
    roots = {stack[0] for stack in parse_collapsed(by_impl["process"].stacks)}
    assert roots == {"[this process]", "[child process]"}  # the worker processes were sampled too
    frames = {f for stack in parse_collapsed(by_impl["thread"].stacks) for f in stack}
    assert any("pools/_core.py" in f for f in frames)  # the pool's own code, where the time goes
    # the timed repeats are untouched: one measurement each
    assert len(store.load_measurements(db, run_id)) == 2

    with open(write_report(db, run_id, out=str(tmp_path / "r.html"))) as f:
        html = f.read()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="flame"') == 2
    assert "Where does the time go: py-spy profiles" in html
    assert "the frames with the most samples of their own" in html
