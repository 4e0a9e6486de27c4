"""The service's options: one frozen value, read by the app and the server."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOOPBACK", "TOKEN_ENV", "ServiceConfig"]

TOKEN_ENV = "POOLBENCH_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServiceConfig:
    backend: str = "thread"
    workers: int | None = None
    queue_size: int = 1000
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    drain_timeout: float = 20.0
    max_body: int = 64 * 1024
    retain_jobs: int = 10_000
    retain_seconds: float = 300.0
    retain_bytes: int = 64 << 20
    max_abandoned: int | None = None  # thread backend; None: max(32, 4 * workers)
    drain_report: str | None = None
    log_level: str = "warning"
    access_log: bool = False
    debug_endpoints: bool = False  # /debug/threads, /tasks, /profile, /heap (poolbench.service.debug)
    jobtypes: tuple[str, ...] = ()  # modules of job types, besides the built-in and the installed packages' ones
