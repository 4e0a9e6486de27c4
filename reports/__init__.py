"""poolbench reports: what users read at the end of every run.

One self-contained HTML page per run (or per comparison of two runs): run
metadata and warnings, per-scenario tables of backends, the course's key
questions answered from the data with their plots, locust load tests and
pytest-benchmark results — plus the tables as CSV and Markdown.

- :mod:`reports.data`: loads a run (SQLite, locust CSVs, benchmark JSON), notes what is missing
- :mod:`reports.tables`: per-case tables, CSV and Markdown
- :mod:`reports.questions`: the key questions, answered with their plots
- :mod:`reports.html` / :mod:`reports.compare`: the pages
- :mod:`reports.browser`: headless Chromium check (screenshot, console errors)

Heavy imports (pandas, matplotlib) happen only when a report is written.
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
