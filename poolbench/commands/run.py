"""``poolbench run``: every backend through the scenarios, results in SQLite, then the report."""

from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backends",
        nargs="+",
        metavar="B",
        help="backends to run (default: the local ones available; name dask to include it)",
    )
    p.add_argument("--scenarios", nargs="+", metavar="S", help="scenarios to run (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer jobs and short sweeps: under 5 minutes")
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="repeats of each measurement (default 5: the fewest that can show a difference at 5%%)",
    )
    p.add_argument("--db", default=None, help="SQLite file (default results/poolbench.db)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")


def run(args: argparse.Namespace) -> int:
    from scenarios import runner, store
    from scenarios.spec import SCENARIOS
    from scenarios.summary import print_summary

    if args.list:
        for name, sc in SCENARIOS.items():
            print(f"{name:<15} {sc.description}")
        return 0
    opts = runner.RunOptions(
        backends=tuple(args.backends or runner.default_backends()),
        scenarios=tuple(args.scenarios or runner.default_scenarios(args.quick)),
        quick=args.quick,
        repeats=args.repeats,
        db=args.db or store.DEFAULT_DB,
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as bar:
        task = bar.add_task("starting", total=runner.count_steps(opts))

        def tick(msg: str) -> None:
            bar.update(task, advance=1, description=msg[:60])

        run_id = runner.run(opts, progress=tick)
    print_summary(opts.db, run_id)
    print(f"\nrun {run_id} took {time.monotonic() - t0:.0f} s; results in {opts.db}")
    if not args.no_report:
        from reports.html import write_report

        path = write_report(opts.db, run_id)
        print(f"report: {path}")
    return 0
