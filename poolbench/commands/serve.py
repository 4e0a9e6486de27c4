"""``poolbench serve`` (and ``python -m poolbench.service``): the service's options."""

from __future__ import annotations

import argparse
import os

from poolbench._cliargs import non_negative_int, positive_int, seconds
from poolbench.service.config import TOKEN_ENV, ServiceConfig

__all__ = ["DESCRIPTION", "add_arguments", "config_from_args", "run"]

DESCRIPTION = "Serve POST/GET/DELETE /jobs, /metrics, /healthz, /readyz for one pool."


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ServiceConfig()
    p.add_argument("--backend", default=d.backend, help="pool backend: thread, process or asyncio (default thread)")
    p.add_argument("--workers", type=positive_int, default=None, help="pool workers (default: the backend's)")
    p.add_argument(
        "--queue-size",
        type=non_negative_int,
        default=d.queue_size,
        help=f"waiting jobs at most; beyond it POST /jobs answers 503 (default {d.queue_size})",
    )
    p.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=non_negative_int, default=d.port, help="port (default 8000; 0: any free port)")
    p.add_argument(
        "--token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV}, else no auth); "
        "prefer the variable: a command line is visible to every user of the machine",
    )
    p.add_argument(
        "--drain-timeout",
        type=seconds,
        default=d.drain_timeout,
        help=f"on SIGTERM, seconds to let accepted jobs finish before cancelling them (default {d.drain_timeout:g})",
    )
    p.add_argument(
        "--max-body",
        type=positive_int,
        default=d.max_body,
        help=f"largest request body in bytes; larger gets 413 (default {d.max_body})",
    )
    p.add_argument(
        "--retain-jobs",
        type=non_negative_int,
        default=d.retain_jobs,
        help=f"finished jobs kept for GET /jobs/{{id}} (default {d.retain_jobs})",
    )
    p.add_argument(
        "--retain-seconds",
        type=seconds,
        default=d.retain_seconds,
        help=f"seconds a finished job is kept (default {d.retain_seconds:g})",
    )
    p.add_argument(
        "--retain-bytes",
        type=non_negative_int,
        default=d.retain_bytes,
        help=f"bytes of kept results at most (default {d.retain_bytes})",
    )
    p.add_argument(
        "--max-abandoned",
        type=non_negative_int,
        default=None,
        help="thread backend: answer 503 while more threads than this still run stopped jobs "
        "(default max(32, 4 x workers))",
    )
    p.add_argument(
        "--drain-report", default=None, metavar="FILE", help="on exit, write what the drain did (JSON) to FILE"
    )
    p.add_argument(
        "--jobtypes",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module (import path, e.g. mypkg.jobtypes; the current directory is importable) whose JOBTYPES "
        "list adds job types; repeatable. Installed packages add theirs through the entry-point group "
        "'poolbench.jobtypes'",
    )
    p.add_argument(
        "--debug-endpoints",
        action="store_true",
        help="serve /debug/threads, /debug/tasks, /debug/profile (py-spy) and /debug/heap (tracemalloc): "
        "stacks, running jobs, profiles and allocation sites of the live service; behind the token when one is set",
    )
    p.add_argument("--log-level", default=d.log_level, choices=("debug", "info", "warning", "error"))
    p.add_argument("--access-log", action="store_true", help="log every request (slower)")


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    return ServiceConfig(
        backend=args.backend,
        workers=args.workers,
        queue_size=args.queue_size,
        host=args.host,
        port=args.port,
        token=token,
        drain_timeout=args.drain_timeout,
        max_body=args.max_body,
        retain_jobs=args.retain_jobs,
        retain_seconds=args.retain_seconds,
        retain_bytes=args.retain_bytes,
        max_abandoned=args.max_abandoned,
        drain_report=args.drain_report,
        log_level=args.log_level,
        access_log=args.access_log,
        jobtypes=tuple(args.jobtypes),
        debug_endpoints=args.debug_endpoints,
    )


def run(args: argparse.Namespace) -> int:
    from poolbench.service.server import serve  # fastapi, uvicorn: only when serving

    return serve(config_from_args(args))
