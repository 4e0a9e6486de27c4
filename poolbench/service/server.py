"""Run the app on uvicorn (uvloop + httptools), and drain on SIGTERM.

SIGTERM (or Ctrl-C)::

    signal ─▶ handle_exit ─(call_soon_threadsafe)─▶ Service.drain():
                 /readyz and POST /jobs answer 503 + Retry-After, GET/DELETE go on;
                 pool.ashutdown(timeout=drain_timeout): accepted jobs finish, and those
                 still waiting or running at the deadline end as "cancelled";
                 the drain report is logged (and written to --drain-report)
              ─▶ should_exit: uvicorn closes the listener and connections ─▶ exit 0

uvicorn's own handler would stop serving at once (so nobody could fetch the results
of the drained jobs) and re-raise the signal after its shutdown, so that the process
would die of it instead of exiting 0; this server does neither. A second signal
cancels every job still live and stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

import pools
from scenarios import jobtypes
from scenarios.imports import LoadError

from .app import Service, create_app
from .config import LOOPBACK, TOKEN_ENV, ServiceConfig

__all__ = ["serve"]

log = logging.getLogger("poolbench.service")


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the main thread, between two bytecodes of the loop: only schedule.
        self._signals += 1
        loop = self._loop
        if loop is None or self.service.pool is None or not self.started:
            self.should_exit = True  # not serving yet: the lifespan's exit drains the pool
        elif self._signals == 1:
            log.warning("%s: draining for up to %gs", signal.Signals(sig).name, self.service.config.drain_timeout)
            loop.call_soon_threadsafe(self._begin_drain)
        else:
            loop.call_soon_threadsafe(self._stop_now)

    def _begin_drain(self) -> None:
        task = asyncio.ensure_future(self.service.drain())
        task.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("drain failed: %r", task.exception())
        self.should_exit = True

    def _stop_now(self) -> None:
        log.warning("second signal: cancelling every job still live")
        for job in self.service.store.live_jobs():
            if job.cancel():
                self.service.cancelled_by_signal.append(job.job_id)
        self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(2048)  # connections wait in the backlog until the app has started
    return sock


def load_jobtypes(config: ServiceConfig, pool: pools.Pool) -> jobtypes.Registry:
    """The job types to serve: the built-in ones, the installed packages' and those
    of ``config.jobtypes``; each must have the form ``pool`` runs, and that form must
    pass the backend's own check (a process pool pickles it). ``LoadError`` naming
    the type, its module and the fix."""
    registry = jobtypes.load_registry(config.jobtypes)
    for name in registry:
        fn = registry.job_for(pool, name)
        try:
            pool.impl.prepare(fn, ({},))
        except pools.InvalidCallable as e:
            raise jobtypes.JobTypeError(
                f"job type {name!r} ({registry.source(name)}) cannot run on the {config.backend!r} backend: {e}"
            ) from e
    return registry


def serve(config: ServiceConfig) -> int:
    logging.basicConfig(
        level=config.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        # Checks the options, and that the pool can run every job type, before binding anything.
        probe = pools.create_pool(
            config.backend, workers=config.workers, queue_size=config.queue_size, overflow="reject"
        )
        try:
            registry = load_jobtypes(config, probe)
        finally:
            probe.shutdown()
    except (pools.PoolError, LoadError) as e:
        print(f"poolbench serve: {e}", file=sys.stderr)
        return 2
    if config.debug_endpoints and config.host not in LOOPBACK and not config.token:
        print(
            f"poolbench serve: --debug-endpoints on {config.host} without a token would show anyone who reaches it "
            f"this process's stacks and heap: set {TOKEN_ENV} (or --token), or bind to loopback",
            file=sys.stderr,
        )
        return 2
    if config.host not in LOOPBACK and not config.token:
        log.warning(
            "listening on %s without a token: anyone who reaches this address can run jobs; set %s (or --token)",
            config.host,
            TOKEN_ENV,
        )
    app = create_app(config, registry)
    uv_config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_config=None,
        log_level=config.log_level,
        access_log=config.access_log,
        server_header=False,
        proxy_headers=False,
        backlog=2048,
        timeout_graceful_shutdown=5,
    )
    server = _DrainingServer(uv_config, app.state.service)
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"poolbench serve: listening on http://{shown}:{port} (backend {config.backend})", flush=True)
    server.run(sockets=[sock])
    result = app.state.service.drain_result
    if result is not None and result.get("lost"):
        log.error("%d accepted job(s) unaccounted for", result["lost"])
        return 1
    return 0
