"""``poolbench contenders``: the options of :mod:`scenarios.contenders`."""

from __future__ import annotations

import argparse

from scenarios.contenders import CASE_NAMES

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = "Each backend beside what a Python user would pick instead, in one run."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="interleaved repeats of every measurement (default 5: the fewest that can show a difference at 5%%)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=20000,
        metavar="N",
        help="jobs per throughput measurement (default 20000; processes run N/4)",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        metavar="C",
        choices=CASE_NAMES,
        help=f"cases to run (default: all): {', '.join(CASE_NAMES)}",
    )
    p.add_argument(
        "--waiting", type=int, default=100_000, metavar="N", help="memory case: jobs left waiting (default 100000)"
    )
    p.add_argument("--json", metavar="PATH", help="also save every value, ratio and verdict as JSON")


def run(args: argparse.Namespace) -> int:
    from scenarios import contenders

    return contenders.run(
        repeats=args.repeats,
        jobs=args.jobs,
        cases=tuple(args.cases or CASE_NAMES),
        waiting=args.waiting,
        json_path=args.json,
    )
