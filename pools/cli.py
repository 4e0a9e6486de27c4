"""The ``poolbench`` command: one sub-command per part of the project.

Each part registers its sub-command in ``COMMANDS`` as "module:function"; the
function adds an argparse sub-parser and sets ``func`` on it. Modules are imported
only to build the parser and must keep their heavy imports inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": "pools.demo:add_command",
    "serve": "pools.service:add_command",
    "loadtest": "loadtests.orchestrator:add_command",
    "run": "scenarios.cli:add_command",
    "contenders": "scenarios.contenders:add_command",
    "report": "reports.cli:add_command",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolbench", description="Worker pools and the harness that measures them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for target in COMMANDS.values():
        module, _, func = target.partition(":")
        try:
            add = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError):
            continue  # that part is not built (or not installed) yet
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
