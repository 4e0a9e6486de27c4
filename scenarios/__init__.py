"""The workloads and their measurement: what ``poolbench run`` (and its preset
``poolbench contenders``) does.

- :mod:`scenarios.imports`: the one loader of the user's code by import path
- :mod:`scenarios.workload`: a workload — a function by import path (or a built-in job
  type), its arguments, its weight in a mix
- :mod:`scenarios.jobtypes`: the named job types (the HTTP service runs the same ones)
- :mod:`scenarios.spec`: the scenarios and their TOML files (``scenarios/builtin/``, and the user's)
- :mod:`scenarios.implementations`: what a measurement runs — ours, a contender, the user's Executor
- :mod:`scenarios.experiments`: what a measurement does, one module per experiment, in a registry
- :mod:`scenarios.result`: one measurement's :class:`~scenarios.result.Result`
- :mod:`scenarios.measure`: one measurement, alone in a fresh ``python -m scenarios.measure``
- :mod:`scenarios.runner`: a run: every case on every implementation, repeats interleaved, control timings
- :mod:`scenarios.store`: the results in SQLite; :mod:`scenarios.stats`: medians, confidence
  intervals, significance; :mod:`scenarios.summary`: the table printed at the end of a run

Imports the library (:mod:`pools`) only; the reports, the load tests and the shell build on it.
"""
