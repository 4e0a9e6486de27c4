"""The benchmarks: the pytest-benchmark suite and the scripts beside it (run them from
the repository root, e.g. ``python -m benchmarks.noop_ratios``)."""
