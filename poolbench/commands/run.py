"""``poolbench run``: scenarios on implementations, results in SQLite, then the report.

poolbench run [SCENARIO ...]                      built-in names or scenario files (.toml)
poolbench run --workload mypkg.jobs:resize_image --args mypkg.jobs:sample_args [--weight 3]
              [--workload ... --args ...]         several: a mix
              [--impl thread --impl ThreadPoolExecutor --impl mypkg:make_executor]
              [--workers 1 2 4 8] [--jobs N] [--arrival poisson --rate 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TypedDict

from poolbench._cliargs import positive_float, positive_int

__all__ = ["DESCRIPTION", "add_arguments", "measure_and_report", "run", "workload_scenario"]

DESCRIPTION = (
    "Run scenarios (built-in names, or your scenario files) or your own workload (--workload) on implementations "
    "(our backends, the contenders, your Executor): each measurement in a fresh process, repeats interleaved, "
    "results in SQLite, then the report, which opens with a recommendation for your workload."
)


class _Defaults(TypedDict):
    jobs: int
    workers: tuple[int, ...]


#: the scenario made from --workload, unless told otherwise
WORKLOAD_DEFAULTS: _Defaults = {"jobs": 500, "workers": (1, 2, 4, 8)}


class _Workload(argparse.Action):
    """--workload starts a workload; the --args and --weight after it belong to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        workloads = list(getattr(namespace, "workloads", None) or [])
        workloads.append({"fn": values})
        namespace.workloads = workloads


class _OfLastWorkload(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        workloads = getattr(namespace, "workloads", None)
        if not workloads:
            parser.error(f"{option_string} belongs to a workload: give it after the --workload it is for")
        key = self.dest  # "args" of --args, "weight" of --weight
        if key in workloads[-1]:
            parser.error(f"{option_string} given twice for --workload {workloads[-1]['fn']}")
        if key == "args" and values.lstrip().startswith("["):
            try:
                values = json.loads(values)
            except json.JSONDecodeError as e:
                parser.error(f"--args {values!r}: a literal list must be JSON ({e.msg}), e.g. '[[1, 2], [3, 4]]'")
        workloads[-1][key] = values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "scenario_args",
        nargs="*",
        metavar="SCENARIO",
        help="built-in scenarios by name, or scenario files (.toml); default: every built-in scenario",
    )
    p.add_argument("--scenarios", nargs="+", metavar="S", default=[], help="the same, as an option")
    p.add_argument(
        "--impl",
        action="append",
        metavar="I",
        help="an implementation to run (repeat for several): our backends (thread, process, asyncio, dask; options "
        "in brackets: process[start_method=spawn]), the contenders (ThreadPoolExecutor, ProcessPoolExecutor, "
        "multiprocessing.Pool, gather+Semaphore, TaskGroup, mpire), or module:factory, a function that takes "
        "the number of workers and returns a concurrent.futures.Executor. Default: each scenario's own; ours, "
        "with the contenders for your workload",
    )
    own = p.add_argument_group("your workload (a scenario made from the command line)")
    own.add_argument(
        "--workload",
        action=_Workload,
        metavar="MODULE:FN",
        help="your function by import path: a function, a coroutine function, or a pair (fn, async_fn); "
        "the current directory is importable. Repeat for a mix",
    )
    own.add_argument(
        "--args",
        action=_OfLastWorkload,
        metavar="SOURCE",
        help="its arguments: module:fn (returns or yields argument tuples), a JSON-lines file, or a JSON list",
    )
    own.add_argument("--weight", action=_OfLastWorkload, type=positive_float, metavar="W", help="its share of the mix")
    own.add_argument("--jobs", type=positive_int, help=f"jobs per measurement (default {WORKLOAD_DEFAULTS['jobs']})")
    own.add_argument(
        "--workers",
        type=positive_int,
        nargs="+",
        metavar="N",
        help="workers; several make a sweep (default: " + " ".join(map(str, WORKLOAD_DEFAULTS["workers"])) + ")",
    )
    own.add_argument(
        "--arrival",
        choices=("closed", "serial", "fixed", "poisson", "bursty"),
        help="closed (default: as fast as accepted), serial (one at a time), or an open loop at --rate or --load",
    )
    rate = own.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=positive_float, help="open loop: jobs per second")
    rate.add_argument(
        "--load", type=positive_float, help="open loop: a multiple of capacity (workers / measured job duration)"
    )
    own.add_argument("--name", help="the scenario's name (default: the function's)")
    p.add_argument("--quick", action="store_true", help="fewer jobs and short sweeps: under 5 minutes")
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=5,
        help="repeats of each measurement (default 5: the fewest that can show a difference at 5%%)",
    )
    p.add_argument(
        "--profile",
        nargs="*",
        metavar="SCENARIO",
        default=None,
        help="record a py-spy profile (worker processes included) of each case on each implementation, in a pass "
        "of its own after the timed repeats, for the report's flame graphs: of every scenario, or of those named "
        "(a scenario file's `profile = true` does it too). Needs py-spy: pip install 'poolbench[debug]'",
    )
    p.add_argument("--db", default=None, help="SQLite file (default results/poolbench.db)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and implementations, and exit")


def workload_scenario(args: argparse.Namespace) -> dict[str, Any]:
    """The scenario (as the data of a scenario file) that --workload and its options describe."""
    workloads = args.workloads
    first = workloads[0]["fn"].rpartition(":")[2]
    workers = args.workers or WORKLOAD_DEFAULTS["workers"]
    data: dict[str, Any] = {
        "name": args.name or (first if len(workloads) == 1 else f"{first}_mix"),
        "description": "your workload: " + ", ".join(w["fn"] for w in workloads),
        "workload": workloads,
        "jobs": args.jobs or WORKLOAD_DEFAULTS["jobs"],
        "arrival": args.arrival or ("poisson" if args.rate or args.load else "closed"),
    }
    if len(workers) > 1:
        data["sweep"] = {"workers": list(workers)}
        data["workers"] = workers[0]
    else:
        data["workers"] = workers[0]
    for key in ("rate", "load"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    return data


def _list() -> int:
    from scenarios import implementations, spec
    from scenarios.imports import LoadError

    for group, title in (("", "scenarios"), ("contenders", "the contenders preset (poolbench contenders)")):
        print(f"{title}:")
        for name, sc in spec.builtin(group).items():
            print(f"  {name:<22} {sc.description}")
    print("implementations:")
    for name in implementations.names():
        try:
            impl = implementations.resolve(name)
        except LoadError as e:
            print(f"  {name:<22} not available here: {e}")
            continue
        runs = "coroutine functions" if impl.runs == "coroutines" else "plain functions"
        how = f"{'ours' if impl.kind == 'ours' else 'contender'}: runs {runs}{', pickled' * impl.pickles}"
        print(f"  {name:<22} {how}" + (f" ({impl.unavailable()})" if impl.unavailable() else ""))
    print("  module:factory         yours: a concurrent.futures.Executor made by factory(workers); plain functions")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    import pools
    from scenarios import runner, spec, store
    from scenarios.imports import LoadError
    from scenarios.spec import ImplSpec

    own = getattr(args, "workloads", None)
    if not own:
        given = [o for o in ("jobs", "workers", "arrival", "rate", "load", "name") if getattr(args, o) is not None]
        if given:
            print(
                f"poolbench run: --{given[0]} describes the scenario of --workload; for a scenario file, "
                "set it in the file",
                file=sys.stderr,
            )
            return 2
    named = [*args.scenario_args, *args.scenarios]
    try:
        scenarios: list[Any] = [spec.resolve(n) for n in named]
        if own:
            scenarios.append(spec.parse(workload_scenario(args), "--workload"))
        elif not named:
            scenarios = list(spec.builtin().values())
        impls = [ImplSpec.parse(i) for i in args.impl] if args.impl else None
        opts = runner.RunOptions(
            scenarios=scenarios,
            implementations=impls,
            quick=args.quick,
            repeats=args.repeats,
            db=args.db or store.DEFAULT_DB,
            profile=False if args.profile is None else (args.profile or True),
        )
        work = runner.plan(opts)  # every mistake shows here, before the database is touched
    except (LoadError, pools.InvalidArgument) as e:
        print(f"poolbench run: {e}", file=sys.stderr)
        return 2
    return measure_and_report(opts, work, report=not args.no_report)


def measure_and_report(opts: Any, work: Any, *, report: bool) -> int:
    """Run a checked plan with a progress bar, then print the summary and the answers."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from scenarios import runner
    from scenarios.summary import print_summary

    t0 = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as bar:
        task = bar.add_task("starting", total=runner.count_steps(work, opts.repeats, opts))

        def tick(msg: str) -> None:
            bar.update(task, advance=1, description=msg[:60])

        run_id = runner.run(opts, progress=tick, work=work)
    console = Console(width=None if Console().is_terminal else 180)
    print_summary(opts.db, run_id, console)
    from reports.answers import print_answers

    print_answers(opts.db, run_id, console)
    console.print(f"\nrun {run_id} took {time.monotonic() - t0:.0f} s; results in {opts.db}")
    if report:
        from reports.html import write_report

        path = write_report(opts.db, run_id)
        console.print(f"report: {path}")
    return 0
