"""``poolbench contenders``: a preset of ``poolbench run`` — the scenarios of
``scenarios/builtin/contenders/``, each running our backends beside what a Python user
would pick instead (ThreadPoolExecutor, ProcessPoolExecutor, multiprocessing.Pool,
asyncio gather+Semaphore, a TaskGroup of consumers, mpire), with the targets they set.
The same runner, store and report as every run; the targets are checked at the end."""

from __future__ import annotations

import argparse

from poolbench._cliargs import positive_int

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Each backend beside what a Python user would pick instead, in one run of `poolbench run` on the contenders "
    "preset: each measurement in a fresh process, repeats interleaved, results in SQLite, the report with the targets."
)


def _cases() -> dict[str, str]:
    from scenarios import spec

    return {name.removeprefix("contenders."): name for name in spec.names("contenders")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cases",
        nargs="+",
        metavar="C",
        help="the cases to run (default: all): " + ", ".join(_cases()),
    )
    p.add_argument("--quick", action="store_true", help="fewer jobs: a smoke run")
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=5,
        help="interleaved repeats of every measurement (default 5: the fewest that can show a difference at 5%%)",
    )
    p.add_argument("--db", default=None, help="SQLite file (default results/poolbench.db)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")


def run(args: argparse.Namespace) -> int:
    import sys

    from scenarios import runner, store
    from scenarios.imports import LoadError

    from .run import measure_and_report

    cases = _cases()
    unknown = [c for c in args.cases or () if c not in cases]
    if unknown:
        print(f"poolbench contenders: unknown case {unknown[0]!r}; valid: {', '.join(cases)}", file=sys.stderr)
        return 2
    opts = runner.RunOptions(
        scenarios=[cases[c] for c in (args.cases or cases)],
        quick=args.quick,
        repeats=args.repeats,
        db=args.db or store.DEFAULT_DB,
    )
    try:
        work = runner.plan(opts)
    except LoadError as e:
        print(f"poolbench contenders: {e}", file=sys.stderr)
        return 2
    return measure_and_report(opts, work, report=not args.no_report)
