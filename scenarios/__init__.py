"""The workloads and their measurement: what ``poolbench run`` and ``poolbench contenders`` do.

- :mod:`scenarios.jobtypes`: the named job types (the HTTP service runs the same ones)
- :mod:`scenarios.spec`: the scenarios, declarative: job mix, arrivals, pool options
- :mod:`scenarios.measure`: one measurement, alone in a fresh ``python -m scenarios.measure``
- :mod:`scenarios.experiments`: the key questions that are not a load
- :mod:`scenarios.runner`: a run: every case on every backend, repeats interleaved, control timings
- :mod:`scenarios.store`: the results in SQLite; :mod:`scenarios.stats`: medians, confidence
  intervals, significance; :mod:`scenarios.summary`: the table printed at the end of a run
- :mod:`scenarios.contenders`: each backend beside what users would pick instead

Imports the library (:mod:`pools`) only; the reports, the load tests and the shell build on it.
"""
