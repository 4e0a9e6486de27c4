"""``poolbench report``: the HTML report of a run, or of two runs compared."""

from __future__ import annotations

import argparse
import sys

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Read the SQLite results, the locust CSVs and the pytest-benchmark JSON and write one self-contained HTML "
    "file (plots inlined, nothing fetched when it is opened), plus the tables as CSV and Markdown beside it."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", type=int, metavar="ID", help="the run to report on")
    which.add_argument("--last", action="store_true", help="the last run in the database (the default)")
    which.add_argument(
        "--compare",
        type=int,
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="compare RUN_B against the baseline RUN_A: significant changes marked",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the HTML file to write (default: reports/run-ID.html next to the database); "
        "the .csv and .md tables go beside it",
    )
    p.add_argument("--db", default=None, help="SQLite file (default results/poolbench.db)")
    p.add_argument("--loadtests", metavar="DIR", help="locust results (default: loadtests/ next to the database)")
    p.add_argument(
        "--benchmarks", metavar="PATH", help="pytest-benchmark JSON (default: benchmarks.json next to the database)"
    )


def run(args: argparse.Namespace) -> int:
    from reports.data import ReportError
    from scenarios.store import DEFAULT_DB

    db = args.db or DEFAULT_DB
    opts = {"out": args.output, "loadtests_dir": args.loadtests, "benchmarks_path": args.benchmarks}
    try:
        if args.compare:
            from reports.compare import write_comparison

            path = write_comparison(db, args.compare[0], args.compare[1], **opts)
        else:
            from reports.html import write_report

            path = write_report(db, args.run, **opts)
    except ReportError as e:
        print(f"poolbench report: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
