"""The ``poolbench`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poolbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a few hundred jobs through every backend and print their stats")
    demo.add_argument("--jobs", type=int, default=400)
    demo.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(jobs=args.jobs, workers=args.workers)
    return 2


if __name__ == "__main__":
    sys.exit(main())
