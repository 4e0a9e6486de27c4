"""``poolbench loadtest``: the options of :mod:`loadtests.orchestrator`."""

from __future__ import annotations

import argparse
import sys

from loadtests import profiles
from loadtests.config import LoadTest
from poolbench._cliargs import duration, non_negative_int, positive_float, positive_int

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Start the service, run locust headless against it on 127.0.0.1, and store locust's CSVs, its HTML report "
    "and summary.json in RESULTS_DIR/<UTC timestamp>-<backend>/."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = LoadTest(mix=())
    p.add_argument("--backend", default=d.backend, help=f"pool backend of the service (default {d.backend})")
    p.add_argument("--workers", type=positive_int, default=None, help="pool workers (default: the backend's)")
    p.add_argument(
        "--queue-size",
        type=non_negative_int,
        default=d.queue_size,
        help=f"the service's queue size (default {d.queue_size})",
    )
    p.add_argument("--users", type=positive_int, default=d.users, help=f"locust users at the peak (default {d.users})")
    p.add_argument(
        "--spawn-rate",
        type=positive_float,
        default=d.spawn_rate,
        help=f"users started per second (default {d.spawn_rate:g})",
    )
    p.add_argument(
        "--duration", type=duration, default=d.duration, help=f"how long: 30s, 2m... (default {d.duration:g}s)"
    )
    p.add_argument(
        "--shape",
        choices=profiles.SHAPES,
        default=d.shape,
        help="steady, ramp, spike, or overload (about 2x what the pool can serve)",
    )
    p.add_argument(
        "--locust-workers",
        type=non_negative_int,
        default=d.locust_workers,
        help="run locust distributed here: one master and K workers (default 0: one process)",
    )
    p.add_argument(
        "--mix",
        default=profiles.DEFAULT_MIX,
        help=f"job types and weights, e.g. 'noop:4,sleep:3' (each sent with its example data), or a JSON list / "
        f"@file.json of {{type, weight, data, timeout, retries}}; any built-in, installed or --jobtypes type "
        f"(default {profiles.DEFAULT_MIX})",
    )
    p.add_argument(
        "--jobtypes",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module of job types (import path; see `poolbench serve --jobtypes`) the service loads and the mix "
        "may name; repeatable",
    )
    p.add_argument(
        "--user-rate",
        type=float,
        default=d.user_rate,
        help="iterations (one submit + one poll) per second per user; 0: as fast as possible "
        "(default; overload sets its own)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=d.drain_timeout,
        help=f"the service's drain deadline at the end (default {d.drain_timeout:g})",
    )
    p.add_argument("--results-dir", default=d.results_dir, help=f"where runs are stored (default {d.results_dir})")


def run(args: argparse.Namespace) -> int:
    from loadtests.orchestrator import parse_mix, run_loadtest
    from scenarios import jobtypes
    from scenarios.imports import LoadError

    try:
        registry = jobtypes.load_registry(args.jobtypes)
    except LoadError as e:
        print(f"poolbench loadtest: --jobtypes: {e}", file=sys.stderr)
        return 2
    try:
        mix = parse_mix(args.mix, registry)
    except (ValueError, OSError) as e:
        print(f"poolbench loadtest: --mix: {e}", file=sys.stderr)
        return 2
    return run_loadtest(
        LoadTest(
            mix=mix,
            backend=args.backend,
            workers=args.workers,
            queue_size=args.queue_size,
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration=args.duration,
            shape=args.shape,
            locust_workers=args.locust_workers,
            user_rate=args.user_rate,
            drain_timeout=args.drain_timeout,
            results_dir=args.results_dir,
            jobtypes=tuple(args.jobtypes),
        )
    )
