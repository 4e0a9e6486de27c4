"""`poolbench contenders`, the preset of `poolbench run`, smoke-run with tiny sizes:
every implementation of the preset measured through the one runner into a real
SQLite file, its targets checked and printed, how each side was prepared recorded,
the memory figures sane. No speed is asserted: ratios belong to a real run of the
command, not to the test suite."""

import math
import subprocess
import sys

import pytest

from scenarios import spec, store
from scenarios.implementations import resolve


def _run(tmp_path, *args):
    db = tmp_path / "contenders.db"
    proc = subprocess.run(
        [sys.executable, "-m", "poolbench", "contenders", "--quick", "--repeats", "1", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, store.load_measurements(str(db))


def _positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.mark.usefixtures("harness_as_users_run")
def test_contenders_is_a_preset_of_run_every_implementation_measured_and_targets_checked(tmp_path):
    out, df = _run(tmp_path, "--cases", "noop", "latency", "memory", "--no-report")
    preset = spec.builtin("contenders")
    for case in ("noop", "latency", "memory"):
        sc = preset[f"contenders.{case}"]
        rows = df[df.scenario == sc.name]
        assert set(rows.implementation) == {i.shown for i in sc.implementations}, case
        assert rows.ok.all(), rows.error.tolist()
        # how each side was prepared is recorded with its measurement, ours and theirs alike
        for row in rows.itertuples():
            impl = resolve(row.implementation)
            assert row.findings.prepared.startswith(impl.prepared), (case, row.implementation)
    noop = df[df.scenario == "contenders.noop"]
    assert all(_positive(v) for v in noop.throughput), noop.throughput.tolist()
    assert noop.completed.tolist() == [preset["contenders.noop"].quick["jobs"]] * len(noop)
    latency = df[df.scenario == "contenders.latency"]
    assert all(_positive(v) for v in latency.lat_p50_ms)
    for row in df[df.scenario == "contenders.memory"].itertuples():
        f = row.findings
        assert f.waiting == 10000 and _positive(f.mb_per_100k) and _positive(f.bytes_per_job) and f.top, row
        # measured, the waiting jobs are cancelled rather than run (all but the few a
        # worker or a ProcessPoolExecutor's call queue has taken)
        assert row.completed + row.cancelled == row.jobs == 10000 and row.cancelled > 9000, row
    # the targets of the preset, checked at the end of the run
    assert "Targets (ratios oriented so that higher is better for ours)" in out
    for case in ("noop", "latency", "memory"):
        for t in preset[f"contenders.{case}"].targets:
            against = f"against {t.versus}, {t.metric}: " if t.versus else f"{t.metric} "
            assert f"contenders.{case}: {t.impl} {against}" in out, (case, t)
    expected = sum(len(preset[f"contenders.{case}"].targets) for case in ("noop", "latency", "memory"))
    assert out.count("target ≥") + out.count("target ≤") == expected == 9


def test_a_contender_that_is_not_installed_is_skipped_with_the_reason(tmp_path, monkeypatch):
    from scenarios import implementations, runner

    absent = "mpire is not installed here (pip install mpire, or the bench extra)"
    monkeypatch.setattr(
        implementations.Implementation, "unavailable", lambda self: absent if self.name == "mpire" else None
    )
    work = runner.plan(runner.RunOptions(scenarios=("contenders.map",), quick=True, repeats=1, db=str(tmp_path / "x")))
    assert {c.spec.shown: c.skipped for c in work.cells} == {
        "process": None,
        "mpire": absent,
        "ProcessPoolExecutor": None,
    }
    assert not (tmp_path / "x").exists()  # planning writes nothing
