"""The ``poolbench`` command: a table of subcommands, each imported only when it runs.

A row names the module that holds the subcommand's arguments and its ``run`` (see
:mod:`poolbench.commands`) and the pip extras it needs. ``poolbench --help`` imports
none of them. A subcommand that cannot run here — an extra missing, or its module
failing to import — is an error that names it and the fix, never a subcommand that
disappears from the list.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType

__all__ = ["COMMANDS", "EXTRAS", "Command", "CommandUnavailable", "command_parser", "load", "main"]

#: pip extra → the top-level modules of it that the subcommands import (checked
#: before a subcommand's module is imported, so that a lazy import deep in a run, or
#: in a child process, cannot fail half-way through). mpire is left out: a run skips
#: that contender without it and says so.
EXTRAS: dict[str, tuple[str, ...]] = {
    "service": ("fastapi", "uvicorn", "uvloop", "httptools", "prometheus_client"),
    "loadtest": ("locust",),
    "bench": ("pydantic", "rich", "psutil", "scipy", "pandas", "matplotlib"),
}


@dataclass(frozen=True)
class Command:
    module: str  # defines add_arguments(parser) and run(args) -> int; DESCRIPTION if it has one
    summary: str  # one line for ``poolbench --help``
    extras: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "run": Command(
        "poolbench.commands.run",
        "run scenarios or your own workload on implementations (ours, the contenders, yours); results in SQLite",
        ("bench",),
    ),
    "report": Command(
        "poolbench.commands.report",
        "write the HTML report of a run (or compare two runs), with its tables as CSV and Markdown",
        ("bench",),
    ),
    "contenders": Command(
        "poolbench.commands.contenders",
        "each backend beside what users would pick instead (stdlib, mpire): a preset of run, with its targets",
        ("bench",),
    ),
    "serve": Command("poolbench.commands.serve", "run the HTTP job service around one pool", ("service",)),
    "loadtest": Command(
        "poolbench.commands.loadtest",
        "load-test the HTTP service with locust (headless), in separate processes",
        ("service", "loadtest"),
    ),
    "demo": Command("poolbench.commands.demo", "run a few hundred jobs through every backend and print their stats"),
}


# poolbench's own top-level packages: one of them missing is a broken install, not a missing extra.
_OURS = ("pools", "scenarios", "reports", "loadtests", "poolbench")


class CommandUnavailable(Exception):
    """A subcommand cannot run here: an extra it needs is not installed, or its module
    does not import. The message names the subcommand and the fix."""


def _missing(command: Command) -> dict[str, list[str]]:
    out = {}
    for extra in command.extras:
        absent = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
        if absent:
            out[extra] = absent
    return out


def _install(extras: list[str] | tuple[str, ...]) -> str:
    return f"pip install 'poolbench[{','.join(extras)}]'"


def load(name: str) -> ModuleType:
    """The module of subcommand ``name``, imported now; CommandUnavailable if it cannot run here."""
    command = COMMANDS[name]
    missing = _missing(command)
    if missing:
        modules = ", ".join(m for absent in missing.values() for m in absent)
        raise CommandUnavailable(
            f"poolbench {name} is not available: {modules} not installed. Install it with: {_install(list(missing))}"
        )
    try:
        return importlib.import_module(command.module)
    except ImportError as e:
        if (e.name or "").partition(".")[0] in _OURS or not command.extras:
            fix = "poolbench's own files are missing or broken: reinstall it (pip install --force-reinstall poolbench)"
        else:
            fix = f"Install what it needs with: {_install(command.extras)}"
        raise CommandUnavailable(
            f"poolbench {name} is not available: importing {command.module} failed: {e}. {fix}"
        ) from e


def command_parser(name: str, module: ModuleType | None = None) -> argparse.ArgumentParser:
    """The argument parser of subcommand ``name`` (imports its module)."""
    module = module or load(name)
    parser = argparse.ArgumentParser(
        prog=f"poolbench {name}", description=getattr(module, "DESCRIPTION", COMMANDS[name].summary)
    )
    module.add_arguments(parser)
    return parser


def _top_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    rows = []
    for name, command in COMMANDS.items():
        missing = _missing(command)
        needs = f" (needs: {_install(list(missing))})" if missing else ""
        rows.append(f"  {name:<{width}}  {command.summary}{needs}")
    parser = argparse.ArgumentParser(
        prog="poolbench",
        usage="poolbench COMMAND [options]",
        description="Worker pools and the harness that measures them.",
        epilog="commands:\n" + "\n".join(rows) + "\n\n'poolbench COMMAND --help' shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help=argparse.SUPPRESS)  # listed in the epilog
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the command's name goes to the top parser: the rest belongs to its own.
    name = _top_parser().parse_args(argv[:1]).command
    try:
        module = load(name)
    except CommandUnavailable as e:
        print(e, file=sys.stderr)
        return 2
    args = command_parser(name, module).parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
