"""poolbench reports: what users read at the end of every run.

One self-contained HTML page per run (or per comparison of two runs): the
recommendation for the user's own workloads, run metadata and warnings, the targets
of the run's scenarios, the course's key questions answered from the data with their
plots, per-scenario tables of implementations, locust load tests and
pytest-benchmark results — plus the tables as CSV and Markdown.

- :mod:`reports.data`: loads a run (SQLite, locust CSVs, benchmark JSON), notes what is missing
- :mod:`reports.analysis`: per-repeat values, paired ratios and verdicts, phrased for sentences
- :mod:`reports.tables`: per-case tables, CSV and Markdown
- :mod:`reports.recommend`: which implementation, with how many workers, for the user's workload
- :mod:`reports.targets`: the targets the scenarios set, checked
- :mod:`reports.questions`: the key questions, answered with their plots
- :mod:`reports.answers`: the recommendation and the targets, printed at the end of a run
- :mod:`reports.plots` / :mod:`reports.markup`: the figures (inline PNG) and the HTML pieces
- :mod:`reports.html` / :mod:`reports.compare`: the pages; :mod:`reports.external`: the
  sections on locust load tests and pytest-benchmark results
- :mod:`reports.browser`: headless Chromium check (screenshot, console errors)

Reads what :mod:`scenarios` stored (and its statistics); ``poolbench report`` and the
end of ``poolbench run`` call it. Heavy imports (pandas, matplotlib) happen only when
a report is written.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportError", "write_comparison", "write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from .html import write_report

        return write_report
    if name == "write_comparison":
        from .compare import write_comparison

        return write_comparison
    if name == "ReportError":
        from .data import ReportError

        return ReportError
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
