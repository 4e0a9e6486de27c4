"""poolbench reports: what users read at the end of every run.

One self-contained HTML page per run (or per comparison of two runs): run
metadata and warnings, per-scenario tables of backends, the course's key
questions answered from the data with their plots, locust load tests and
pytest-benchmark results — plus the tables as CSV and Markdown.

- :mod:`reports.data`: loads a run (SQLite, locust CSVs, benchmark JSON), notes what is missing
- :mod:`reports.analysis`: per-repeat values, paired ratios and verdicts, phrased for sentences
- :mod:`reports.tables`: per-case tables, CSV and Markdown
- :mod:`reports.questions`: the key questions, answered with their plots
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
