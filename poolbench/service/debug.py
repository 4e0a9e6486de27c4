"""The profiling window of ``poolbench serve --debug-endpoints`` (Go's net/http/pprof,
for a Python pool). Off unless asked; behind the bearer token like every other path.

- ``GET /debug/threads``: every thread's stack, and each running job (id, type,
  attempt, age) from ``Pool.running_jobs()``; ``?format=text`` for a plain dump.
- ``GET /debug/tasks``: the asyncio tasks of the pool's event loop (the server's own
  loop for the asyncio backend), each with its stack.
- ``GET /debug/profile?seconds=N&format=svg|speedscope``: a py-spy sampled profile of
  this process and its children (the process backend's workers) for N seconds: a
  flame graph (SVG), or a file that https://www.speedscope.app opens. N is capped
  (``MAX_PROFILE_SECONDS``), and one profile runs at a time (409 meanwhile). py-spy
  samples from outside (ptrace): the service runs on unchanged, and nothing of it is
  loaded until asked.
- ``GET /debug/heap``: tracemalloc's top allocation sites, and their growth since the
  endpoint was first asked (when tracing began: tracing costs while it is on, so it
  starts on the first ask, and ``DELETE /debug/heap`` stops it).

Without a token, these paths answer only a request addressed to a loopback name (its
``Host``) and not sent by a web page of another site (``Sec-Fetch-Site``, ``Origin``):
otherwise any page the user opens could, through the browser, read the stacks (DNS
rebinding) or start profiles and tracing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
from types import FrameType
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from scenarios.profiling import find_py_spy

__all__ = ["MAX_PROFILE_SECONDS", "add_debug_routes", "find_py_spy"]

MAX_PROFILE_SECONDS = 60
PROFILE_RATE = 100  # samples a second (py-spy's default)
HEAP_TOP = 25  # allocation sites listed
HEAP_FRAMES = 8  # frames kept per traced allocation


def _frames(frame: FrameType | None) -> list[str]:
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_stack(frame)] if frame else []


def _await_chain(coro: Any) -> list[str]:
    """A suspended task's stack, outermost first, down the chain of awaits (Task.get_stack
    gives only the outermost frame of a suspended coroutine)."""
    out = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class _Debug:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.profiling = False  # read and set on the event loop only: no lock needed
        self.heap_baseline: tracemalloc.Snapshot | None = None
        self.heap_since: float | None = None
        self.heap_lock = threading.Lock()

    # -------------------------------------------------------------- threads

    def threads(self) -> dict[str, Any]:
        frames = sys._current_frames()
        threads = []
        for t in threading.enumerate():
            threads.append(
                {
                    "name": t.name,
                    "ident": t.ident,
                    "daemon": t.daemon,
                    "stack": _frames(frames.get(t.ident)) if t.ident is not None else [],
                }
            )
        pool = self.service.pool
        jobs = []
        if pool is not None:
            for r in pool.running_jobs():
                jobs.append(
                    {
                        "job_id": r.job_id,
                        "type": self.service.store.type_of(r.job_id),
                        "attempt": r.attempt,
                        "age": round(r.age, 6),
                        "function": r.function,
                    }
                )
        return {
            "pid": os.getpid(),
            "backend": self.service.config.backend,
            "running_jobs": jobs,
            "threads": threads,
        }

    @staticmethod
    def threads_text(dump: dict[str, Any]) -> str:
        lines = [f"poolbench serve (pid {dump['pid']}, backend {dump['backend']})", ""]
        lines.append(f"running jobs: {len(dump['running_jobs'])}")
        for j in dump["running_jobs"]:
            lines.append(
                f"  job {j['job_id']} type={j['type']} attempt={j['attempt']} age={j['age']:.3f}s {j['function']}"
            )
        for t in dump["threads"]:
            lines += ["", f"thread {t['name']!r} (ident {t['ident']}{', daemon' if t['daemon'] else ''}):"]
            lines += [f"    {frame}" for frame in t["stack"]]
        return "\n".join(lines) + "\n"

    # -------------------------------------------------------------- tasks

    async def tasks(self) -> dict[str, Any]:
        pool = self.service.pool
        here = asyncio.get_running_loop()
        loop = getattr(pool.impl, "loop", None) if pool is not None else None
        whose = "pool" if isinstance(loop, asyncio.AbstractEventLoop) else "server"
        if not isinstance(loop, asyncio.AbstractEventLoop):
            loop = here
        if loop is here:
            listed = self._describe_tasks(loop)
        else:  # the pool's loop on a thread of its own: read it there
            listed = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._describe_tasks_async(loop), loop))
        return {
            "backend": self.service.config.backend,
            "loop": whose,
            "note": None
            if whose == "pool"
            else f"the {self.service.config.backend!r} backend runs no asyncio tasks: these are the server's own",
            "tasks": listed,
        }

    async def _describe_tasks_async(self, loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
        return self._describe_tasks(loop)

    @staticmethod
    def _describe_tasks(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
        out = []
        for task in asyncio.all_tasks(loop):
            coro = task.get_coro()
            out.append(
                {
                    "name": task.get_name(),
                    "coro": getattr(coro, "__qualname__", repr(coro)),
                    "done": task.done(),
                    "stack": _await_chain(coro),
                }
            )
        return sorted(out, key=lambda t: t["name"])

    # -------------------------------------------------------------- profile

    async def profile(self, seconds: int, fmt: str, rate: int, gil: bool, idle: bool, native: bool) -> Response:
        if self.profiling:
            return _error(409, "a profile is being recorded: one at a time; try again when it ends")
        if not 0 < seconds <= MAX_PROFILE_SECONDS:
            return _error(
                400,
                f"seconds must be greater than 0 and at most {MAX_PROFILE_SECONDS} (the cap of /debug/profile), "
                f"got {seconds}",
            )
        if fmt not in ("svg", "speedscope"):
            return _error(400, f"format must be 'svg' (a flame graph) or 'speedscope', got {fmt!r}")
        if not 1 <= rate <= 1000:
            return _error(400, f"rate must be between 1 and 1000 samples a second, got {rate}")
        exe = find_py_spy()
        if exe is None:
            return _error(
                501, "py-spy is not installed where this server runs: pip install 'poolbench[debug]' (or py-spy)"
            )
        self.profiling = True
        try:
            return await self._record(exe, seconds, fmt, rate, gil, idle, native)
        finally:
            self.profiling = False

    async def _record(
        self, exe: str, seconds: int, fmt: str, rate: int, gil: bool, idle: bool, native: bool
    ) -> Response:
        with tempfile.TemporaryDirectory(prefix="poolbench-profile-") as tmp:
            out = os.path.join(tmp, "profile.svg" if fmt == "svg" else "profile.json")
            cmd = [
                exe,
                "record",
                "--pid",
                str(os.getpid()),
                "--subprocesses",
                "--nonblocking",  # never pause the server
                "--duration",
                str(seconds),
                "--rate",
                str(rate),
                "--format",
                "flamegraph" if fmt == "svg" else "speedscope",
                "--output",
                out,
            ]
            if gil:
                cmd.append("--gil")
            if idle:
                cmd.append("--idle")
            if native:  # the compiled pools (Cython) and C extensions, frame by frame
                cmd.append("--native")
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            try:
                stdout, stderr = await asyncio.wait_for(proc.communicate(), seconds + 30)
            except (TimeoutError, asyncio.CancelledError):
                proc.kill()
                await proc.wait()
                raise
            body = await asyncio.to_thread(_read, out)
            if proc.returncode != 0 or body is None:
                said = (stderr or stdout).decode(errors="replace").strip()[-600:]
                return _error(
                    500,
                    f"py-spy could not profile pid {os.getpid()} (exit {proc.returncode}): {said}. It attaches with "
                    "ptrace: run as root, or allow it (sysctl kernel.yama.ptrace_scope=0; in a container, "
                    "--cap-add SYS_PTRACE)",
                )
        if fmt == "svg":
            return Response(body, media_type="image/svg+xml")
        return Response(
            body,
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="poolbench-profile.speedscope.json"'},
        )

    # -------------------------------------------------------------- heap

    def heap(self, top: int) -> dict[str, Any]:
        with self.heap_lock:  # one reader or stopper at a time: a stop mid-snapshot broke it
            return self._heap(top)

    def _heap(self, top: int) -> dict[str, Any]:
        if not tracemalloc.is_tracing():
            tracemalloc.start(HEAP_FRAMES)
            self.heap_baseline = None
        if self.heap_baseline is None:
            self.heap_baseline = tracemalloc.take_snapshot()
            self.heap_since = time.time()
        snap = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            )
        )
        current, peak = tracemalloc.get_traced_memory()
        sites = [
            {
                "site": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                "bytes": s.size,
                "count": s.count,
            }
            for s in snap.statistics("lineno")[:top]
        ]
        growth = [
            {
                "site": f"{d.traceback[0].filename}:{d.traceback[0].lineno}",
                "bytes": d.size,
                "bytes_growth": d.size_diff,
                "count": d.count,
                "count_growth": d.count_diff,
            }
            for d in snap.compare_to(self.heap_baseline, "lineno")[:top]
            if d.size_diff or d.count_diff
        ]
        return {
            "tracing_since": self.heap_since,
            "traced_bytes": current,
            "traced_peak_bytes": peak,
            "top": sites,
            "growth": growth,
            "note": "tracemalloc traces this process (not the process backend's workers) from the first "
            "GET /debug/heap; it slows allocation while on: DELETE /debug/heap stops it",
        }

    def stop_heap(self) -> dict[str, Any]:
        with self.heap_lock:
            was = tracemalloc.is_tracing()
            tracemalloc.stop()
            self.heap_baseline = self.heap_since = None
        return {"tracing": False, "was_tracing": was}


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _loopback_origin(origin: str) -> bool:
    rest = origin.partition("://")[2]
    return bool(rest) and _host_name(rest) in LOOPBACK_NAMES


def check_local_request(request: Request, *, has_token: bool) -> None:
    """Refuse a debug request a browser sent on a web page's behalf (see the module's
    docstring). With a token, the token is the guard: a page cannot know it."""
    if has_token:
        return
    host = request.headers.get("host", "")
    if _host_name(host) not in LOOPBACK_NAMES:
        raise HTTPException(
            403, f"/debug answers requests to a loopback name without a token; this one was for Host {host!r}"
        )
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site in ("cross-site", "same-site") or (origin is not None and not _loopback_origin(origin)):
        raise HTTPException(403, f"/debug refuses requests sent by a web page of another site ({origin or site})")


def add_debug_routes(app: FastAPI, service: Any) -> None:
    """Mount the /debug endpoints on ``app`` (``--debug-endpoints``)."""
    debug = _Debug(service)
    has_token = bool(service.config.token)

    def local_only(request: Request) -> None:
        check_local_request(request, has_token=has_token)

    guard = [Depends(local_only)]

    @app.get("/debug/threads", summary="Every thread's stack and each running job", dependencies=guard)
    async def threads(format: str = "json") -> Response:
        dump = debug.threads()
        if format == "text":
            return PlainTextResponse(debug.threads_text(dump))
        return JSONResponse(dump)

    @app.get("/debug/tasks", summary="The asyncio tasks of the pool's loop, with their stacks", dependencies=guard)
    async def tasks() -> Response:
        return JSONResponse(await debug.tasks())

    @app.get(
        "/debug/profile",
        summary="A py-spy profile of the service and its worker processes",
        dependencies=guard,
        responses={
            200: {"content": {"image/svg+xml": {}, "application/json": {}}},
            400: {"description": "seconds beyond the cap, or a bad format"},
            409: {"description": "a profile is being recorded"},
            501: {"description": "py-spy is not installed"},
        },
    )
    async def profile(
        seconds: int = 5,
        format: str = "svg",
        rate: int = PROFILE_RATE,
        gil: bool = False,
        idle: bool = False,
        native: bool = False,
    ) -> Response:
        return await debug.profile(seconds, format, rate, gil, idle, native)

    @app.get("/debug/heap", summary="tracemalloc's top allocation sites and their growth", dependencies=guard)
    async def heap(top: int = HEAP_TOP) -> Response:
        return JSONResponse(await asyncio.to_thread(debug.heap, max(1, min(top, 500))))

    @app.delete("/debug/heap", summary="Stop tracing allocations", dependencies=guard)
    async def stop_heap() -> Response:
        return JSONResponse(await asyncio.to_thread(debug.stop_heap))
