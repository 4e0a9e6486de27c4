"""``poolbench demo``: the options of :mod:`poolbench.demo`."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=400, help="jobs per backend (default 400)")
    p.add_argument("--workers", type=int, default=4, help="workers per pool (default 4)")


def run(args: argparse.Namespace) -> int:
    from poolbench.demo import run_demo

    return run_demo(jobs=args.jobs, workers=args.workers)
