"""`poolbench contenders`, smoke-run with tiny sizes: every implementation yields a
number, the ratio lines are printed, the memory figures are sane. No speed is
asserted: ratios belong to a real run of the command, not to the test suite."""

import json
import math
import subprocess
import sys

from scenarios import contenders


def _run(tmp_path, *args):
    out_json = tmp_path / "contenders.json"
    proc = subprocess.run(
        [sys.executable, "-m", "poolbench", "contenders", "--repeats", "1", "--json", str(out_json), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout, json.loads(out_json.read_text())


def _positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_contenders_smoke_every_implementation_measured_and_ratios_printed(tmp_path):
    cases = ["noop", "latency", "cpu1ms", "map", "scaling"]
    out, doc = _run(tmp_path, "--jobs", "200", "--cases", *cases)
    table = contenders.implementations(200)
    assert doc["failures"] == []
    for case in cases:
        assert set(doc["values"][case]) == set(table[case]), case
        for impl, vals in doc["values"][case].items():
            assert len(vals) == 1 and _positive(vals[0]), (case, impl, vals)
    assert "ratios (ours / theirs" in out
    for case, ours, theirs, target in contenders.PAIRS:
        if case in cases and theirs in table[case]:
            assert f"{case:<8} {ours} vs {theirs}: " in out
            if target is not None:
                assert f"target >= {target:.2f}: " in out
    assert "of the ideal" in out
    assert "thread, 2 workers, by jobs" in out and "growth" in out
    assert {r["case"] for r in doc["ratios"]} == {"noop", "latency", "cpu1ms", "map"}
    # how each side was prepared is said, for ours and theirs alike
    assert "how each side was prepared before its clock started" in out
    for case in cases:
        for impl, (_, _, prepared) in table[case].items():
            assert f"{case:<8} {impl:<28} {prepared}" in out
            assert doc["prepared"][case][impl] == prepared
    if contenders._have_mpire():
        assert doc["prepared"]["map"]["mpire map"].startswith("WorkerPool(keep_alive=True)")
    if not contenders._have_mpire():
        assert "mpire is not installed" in out


def test_contenders_memory_figures_are_positive_and_finite(tmp_path):
    out, doc = _run(tmp_path, "--cases", "memory", "--waiting", "10000")
    mem = doc["values"]["memory"]
    assert set(mem) == {"thread", "ThreadPoolExecutor", "process", "ProcessPoolExecutor", "asyncio"}
    for impl, vals in mem.items():
        assert _positive(vals[0]), (impl, vals)
        extra = doc["extras"]["memory"][impl][0]
        assert extra["waiting"] == 10000 and _positive(extra["extra_rss_mb"]), (impl, extra)
        assert _positive(extra["bytes_per_job"]) and extra["top"], (impl, extra)
    assert "target < 100 MB: " in out and "B/job" in out
