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


def serve(config: ServiceConfig) -> int:
    logging.basicConfig(
        level=config.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        pools.create_pool(
            config.backend, workers=config.workers, queue_size=config.queue_size, overflow="reject"
        ).shutdown()  # checks the options before binding anything
    except pools.PoolError as e:
        print(f"poolbench serve: {e}", file=sys.stderr)
        return 2
    if config.host not in LOOPBACK and not config.token:
        log.warning(
            "listening on %s without a token: anyone who reaches this address can run jobs; set %s (or --token)",
            config.host,
            TOKEN_ENV,
        )
    app = create_app(config)
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
