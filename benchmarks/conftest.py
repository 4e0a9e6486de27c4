# The benchmarks start pools once per module; the project's per-test leak check
# (tests/conftest.py) does not apply here, each module shuts its pools down itself.

# Each poolbench backend beside its stdlib contender in the same group of the same run:
# the ratio of their median throughputs is printed at the end of `make bench`.
CONTENDERS = {
    "thread": ("ThreadPoolExecutor",),
    "process": ("ProcessPoolExecutor",),
    "asyncio (own loop)": ("asyncio.gather + Semaphore", "asyncio.TaskGroup of consumers"),
}


def throughput_ratios(benchmarks) -> list[str]:
    """Lines "group: ours / theirs = ratio" from pytest-benchmark's results (each
    benchmark's extra_info names its backend and how many jobs one round runs)."""
    rates: dict[tuple[str, str], float] = {}
    for bench in benchmarks:
        info = getattr(bench, "extra_info", {}) or {}
        if not bench or "backend" not in info or not info.get("jobs"):
            continue
        rates[(bench.group, info["backend"])] = info["jobs"] / bench.stats.median
    lines = []
    for (group, backend), rate in sorted(rates.items()):
        for theirs in CONTENDERS.get(backend, ()):
            if (group, theirs) in rates:
                other = rates[(group, theirs)]
                lines.append(
                    f"{group}: {backend} {rate:,.0f} jobs/s / {theirs} {other:,.0f} jobs/s = {rate / other:.2f}x"
                )
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    lines = throughput_ratios(session.benchmarks)
    if lines:
        terminalreporter.section("poolbench / stdlib (median throughput, same run)")
        for line in lines:
            terminalreporter.write_line(line)
