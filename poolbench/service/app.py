"""The FastAPI app: POST/GET/DELETE /jobs, /metrics, /healthz, /readyz.

Request path::

    client ─▶ _Edge (pure ASGI: bearer token, body size, request metrics)
               ├─ POST /jobs (fast path) ─▶ Service.submit_raw: the request model of the
               │                              job-type registry (type, and its data model)
               │                              ─▶ await pool.asubmit(overflow="reject")
               │                                    │ QueueFull ─▶ 503 + Retry-After
               │                                    ▼
               │               JobStore.add ◀─ job.add_done_callback(JobStore.finish)
               └─ everything else ─▶ FastAPI routes (GET/DELETE /jobs/{id} read JobStore)

The pool never blocks the event loop: it is created with ``overflow="reject"``, so
a full queue is a 503 at once. The asyncio backend runs its jobs on the server's own
loop (the pool is started inside the lifespan); the thread and process backends run
them on their workers and report back through the job's done-callback.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, ProcessCollector, generate_latest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

import pools
from pools import PoolClosed, QueueFull
from scenarios import jobtypes

from .config import ServiceConfig
from .metrics import PoolCollector, RequestMetrics
from .store import STATUSES, JobStore

__all__ = ["Service", "create_app"]

log = logging.getLogger("poolbench.service")

Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes answer without a token
MAX_TIMEOUT = 3600.0
MAX_RETRIES = 10
RETRY_BACKOFF = 0.05
PRIORITY_LIMIT = 2**31 - 1


# ---------------------------------------------------------------------- schema


class JobFields(BaseModel):
    """What every job request has besides its type and data."""

    model_config = ConfigDict(extra="forbid", strict=True)

    priority: int = Field(default=0, ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT, description="higher runs first")
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT, description="seconds per attempt")
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES, description="attempts after the first, on any failure")


FIELDS = ("type", "data", *JobFields.model_fields)


def _no_data_is_empty(cls: type, value: Any) -> Any:
    return {} if value is None else value


def request_type(registry: jobtypes.Registry) -> Any:
    """The body of POST /jobs: one model per job type, told apart by ``type``, whose
    ``data`` is that type's model. A discriminated union: pydantic validates the data
    against the named type only, reports an error at ``<type>.data.<field>``, and
    ``/openapi.json`` shows every type's model."""
    variants = []
    for jt in registry.values():
        # a Literal of a name known at run time: a type no annotation can state, so Any
        tag: Any = Literal[jt.name]
        variants.append(
            create_model(
                f"Job_{re.sub(r'[^A-Za-z0-9_]', '_', jt.name)}",
                __base__=JobFields,
                __doc__=f"A {jt.name!r} job: {jt.doc}" if jt.doc else f"A {jt.name!r} job.",
                __validators__={"_no_data": field_validator("data", mode="before")(_no_data_is_empty)},
                type=(tag, Field(description=jt.doc or jt.name)),
                data=(
                    jt.model,
                    Field(default_factory=dict, validate_default=True, description=f"the parameters of {jt.name!r}"),
                ),
            )
        )
    return Annotated[Union[tuple(variants)], Field(discriminator="type")]  # noqa: UP007 - a runtime union of models


class Accepted(BaseModel):
    job_id: int
    status: str = Field(json_schema_extra={"enum": ["accepted"]})


class JobInfo(BaseModel):
    job_id: int
    type: str
    status: str = Field(json_schema_extra={"enum": list(STATUSES)})
    priority: int
    attempts: int = Field(description="attempts started so far")
    queue_wait: float | None = Field(description="seconds the latest attempt waited (so far, if still waiting)")
    run_time: float | None = Field(description="seconds the latest attempt ran (so far, if still running)")
    accepted_at: float = Field(description="Unix time the job was accepted")
    finished_at: float | None = Field(description="Unix time the job finished")
    error: str | None = Field(description="'ExceptionType: message' for a failed, timed out job")
    result: Any = Field(description="the job's return value (JSON) once it succeeded")


class Problem(BaseModel):
    detail: str
    errors: list[dict[str, str]] | None = None


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


_AUTH: dict[int | str, dict[str, Any]] = {
    401: _problem("missing or wrong bearer token (only when the service has one)")
}
_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "accepted",
        "headers": {"Location": {"schema": {"type": "string"}, "description": "/jobs/{job_id}"}},
    },
    400: _problem("the body is not JSON"),
    413: _problem("the body is larger than the limit"),
    415: _problem("the body is not application/json"),
    422: _problem("a field is missing or breaks its constraint (the message names both)"),
    503: {
        "model": Problem,
        "description": "the queue is full, or the server is draining: try again after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    },
    **_AUTH,
}
_JOB_RESPONSES: dict[int | str, dict[str, Any]] = {404: _problem("no such job, or its record expired"), **_AUTH}


# ---------------------------------------------------------------------- state


class Service:
    """The pool, the job store and the drain state of one app."""

    def __init__(self, config: ServiceConfig, job_types: jobtypes.Registry) -> None:
        self.config = config
        self.jobtypes = job_types
        self.request_type = request_type(job_types)
        self._parse = TypeAdapter(self.request_type).validate_json
        self._forms: dict[str, Any] = {}  # job type -> the function the pool runs
        self.pool: pools.Pool | None = None
        self.store = JobStore(max_jobs=config.retain_jobs, max_age=config.retain_seconds, max_bytes=config.retain_bytes)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes...
        self.requests = RequestMetrics(self.registry)
        accepted = Counter(
            "poolbench_service_jobs_accepted", "Jobs accepted, by job type", ("type",), registry=self.registry
        )
        self._accepted = {name: accepted.labels(name) for name in job_types}  # a label per type: a bounded set
        self.registry.register(PoolCollector(lambda: self.pool, self._extra_metrics))
        self.draining = False
        self.refused = {"queue_full": 0, "draining": 0, "threads": 0}
        self.drain_result: dict[str, Any] | None = None
        self.cancelled_by_signal: list[int] = []  # by a second SIGTERM, before the deadline
        self._drain_deadline = 0.0
        self._drain_task: asyncio.Task | None = None
        self._max_abandoned = 0

    def _extra_metrics(self) -> dict[str, tuple[str, str, float]]:
        c = self.store.counts()
        out = {
            "draining": ("gauge", "1 while the server drains after SIGTERM", float(self.draining)),
            "jobs_live": ("gauge", "Accepted jobs not finished yet", c["live"]),
            "jobs_retained": ("gauge", "Finished jobs whose result can still be fetched", c["retained"]),
            "jobs_retained_bytes": ("gauge", "Bytes of the retained results", c["retained_bytes"]),
            "jobs_evicted": ("counter", "Finished jobs dropped from the store (age, count or bytes)", c["evicted"]),
        }
        for reason, n in self.refused.items():
            out[f"refused_{reason}"] = ("counter", f"POST /jobs answered 503: {reason.replace('_', ' ')}", n)
        return out

    async def start(self) -> None:
        cfg = self.config
        pool = pools.create_pool(
            cfg.backend,
            workers=cfg.workers,
            queue_size=cfg.queue_size,
            overflow="reject",
            name=f"poolbench-service-{cfg.backend}",
        )
        if pool.capabilities.runs == "coroutines":
            pool.start()  # here, on the server's loop: jobs submitted from it pay no thread hop
        else:
            await asyncio.to_thread(pool.start)  # process workers take a moment to fork
        self._forms = {name: self.jobtypes.job_for(pool, name) for name in self.jobtypes}
        self.pool = pool
        if cfg.backend == "thread":
            self._max_abandoned = cfg.max_abandoned if cfg.max_abandoned is not None else max(32, 4 * pool.workers)

    async def submit_raw(self, body: bytes, content_type: str) -> Reply:
        """POST /jobs from the raw body: parse, validate, submit."""
        if not _is_json(content_type):
            return _not_json(content_type)
        if not body:
            return _problem_reply(
                422, "the body is required: a JSON object with fields type, data, priority, timeout, retries", "body"
            )
        try:
            request = self._parse(body)
        except ValidationError as e:
            return _validation_reply(e.errors(), self.jobtypes)
        return await self.submit(request)

    async def submit(self, req: Any) -> Reply:
        """Submit a validated request (an instance of one of :func:`request_type`'s models)."""
        pool = self.pool
        if self.draining or pool is None:
            self.refused["draining"] += 1
            return _problem_reply(
                503,
                "the server is draining (shutting down) and takes no new jobs",
                headers=[(b"retry-after", self.retry_after().encode())],
            )
        if self.too_many_abandoned():
            self.refused["threads"] += 1
            return _problem_reply(
                503,
                "too many threads still run stopped jobs (thread backend); try again later",
                headers=[(b"retry-after", b"1")],
            )
        retry = pools.Retry(attempts=req.retries + 1, backoff=RETRY_BACKOFF) if req.retries else None
        try:
            job = await pool.asubmit(
                self._forms[req.type], req.data.model_dump(), priority=req.priority, timeout=req.timeout, retry=retry
            )
        except QueueFull:
            self.refused["queue_full"] += 1
            return _problem_reply(
                503,
                f"the queue is full ({pool.queue_size} waiting, {pool.workers} workers busy)",
                headers=[(b"retry-after", self.retry_after().encode())],
            )
        except PoolClosed:
            self.refused["draining"] += 1
            return _problem_reply(
                503,
                "the server is draining (shutting down) and takes no new jobs",
                headers=[(b"retry-after", self.retry_after().encode())],
            )
        self.store.add(job, req.type)
        self._accepted[req.type].inc()
        job.add_done_callback(self.store.finish)
        return 202, b'{"job_id":%d,"status":"accepted"}' % job.job_id, [(b"location", b"/jobs/%d" % job.job_id)]

    def too_many_abandoned(self) -> bool:
        # A thread cannot be killed: the job types watch their context, but a job
        # blocked in a long C call keeps its thread after a timeout or cancel while
        # the pool starts a new one. Refusing work past a bound keeps the thread
        # count, so memory, bounded.
        pool = self.pool
        return bool(self._max_abandoned) and pool is not None and pool.abandoned > self._max_abandoned

    def retry_after(self) -> str:
        if self.draining:
            return str(max(1, math.ceil(self._drain_deadline - time.monotonic())))
        return "1"

    async def drain(self) -> dict[str, Any]:
        """Stop taking jobs, let the accepted ones finish within the drain deadline,
        cancel the rest. Idempotent; every caller gets the same result."""
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain())
        return await asyncio.shield(self._drain_task)

    async def _drain(self) -> dict[str, Any]:
        cfg = self.config
        self.draining = True
        self._drain_deadline = time.monotonic() + cfg.drain_timeout
        pool = self.pool
        if pool is None:
            self.drain_result = {"accepted": 0, "lost": 0}
            return self.drain_result
        log.warning(
            "draining: %d job(s) in flight, deadline %gs",
            pool.stats().submitted - pool.stats().finished,
            cfg.drain_timeout,
        )
        report = await pool.ashutdown(timeout=cfg.drain_timeout)
        s = pool.stats()
        self.drain_result = {
            "backend": s.backend,
            "accepted": s.submitted,
            "succeeded": s.succeeded,
            "failed": s.failed,
            "timed_out": s.timed_out,
            "cancelled": s.cancelled,
            "lost": s.submitted - s.finished,
            "cancelled_waiting_ids": list(report.cancelled),
            "cancelled_running_ids": list(report.killed),
            "cancelled_by_second_signal_ids": self.cancelled_by_signal,
            "abandoned_threads": report.abandoned_threads,
            "duration": round(report.duration, 3),
        }
        log.warning("drained: %s", json.dumps(self.drain_result))
        if cfg.drain_report:
            with open(cfg.drain_report, "w") as f:  # noqa: ASYNC230 - once, at exit, after the drain
                json.dump(self.drain_result, f, indent=1)
        return self.drain_result


# ---------------------------------------------------------------------- edge


def _messages(reply: Reply, extra: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[dict, dict]:
    status, body, headers = reply
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *headers, *extra],
    }
    return start, {"type": "http.response.body", "body": body}


class _Edge:
    """Pure ASGI middleware, outside FastAPI's routing: the bearer token, the body
    size limit, the request metrics of every answer, and the fast path of
    ``POST /jobs``, which answers from ``Service.submit_raw`` without FastAPI's
    routing and per-request dependency machinery (the documented route ends in the
    same ``Service.submit``). It is the hot path: see benchmarks/http_bench.py."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app = app
        self.service = service
        token = service.config.token
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body = service.config.max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal, body, content_type = await self._check(scope, receive)
            if refusal is not None:
                for message in _messages(refusal, ((b"connection", b"close"),) if refusal[0] == 413 else ()):
                    await send_and_note(message)
            elif body is not None:  # POST /jobs
                for message in _messages(await self.service.submit_raw(body, content_type)):
                    await send_and_note(message)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            self.service.requests.observe(scope["method"], scope["path"], status, time.perf_counter() - t0)

    async def _check(self, scope: dict, receive: Any) -> tuple[Reply | None, bytes | None, str]:
        """(refusal, the body of a POST /jobs, its content type)."""
        auth = length = None
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        if (
            self.expected is not None
            and scope["path"] not in OPEN_PATHS
            and (auth is None or not hmac.compare_digest(auth, self.expected))
        ):
            challenge = b'Bearer realm="poolbench"' + (b', error="invalid_token"' if auth else b"")
            what = "a wrong bearer token" if auth else "no bearer token"
            reply = _problem_reply(
                401, f"this service requires 'Authorization: Bearer <token>'; the request had {what}"
            )
            return (reply[0], reply[1], [(b"www-authenticate", challenge)]), None, ""
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return self._too_large(), None, ""
        if scope["method"] != "POST" or scope["path"] != "/jobs":
            return None, None, ""  # any other body is small or refused above: FastAPI reads it
        chunks, size, more = [], 0, True
        while more:  # read the body here, up to the limit (chunked bodies declare no length)
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return self._too_large(), None, ""
            chunks.append(chunk)
            more = message.get("more_body", False)
        return None, chunks[0] if len(chunks) == 1 else b"".join(chunks), content_type.decode("latin-1")

    def _too_large(self) -> Reply:
        return _problem_reply(413, f"the request body is larger than the limit of {self.max_body} bytes")


# ---------------------------------------------------------------------- errors


_BODY = f"a JSON object with fields {', '.join(FIELDS)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_error(err: dict, registry: jobtypes.Registry) -> tuple[int, str, str]:
    """(status, field, message) for one pydantic error, naming the field and the constraint."""
    kind = err.get("type", "")
    loc = [str(p) for p in err.get("loc", ())]
    if loc[:1] == ["body"]:  # FastAPI's route puts the body first; the fast path does not
        loc = loc[1:]
    if kind == "json_invalid":
        ctx = err.get("ctx") or {}
        if "error" in ctx:  # from FastAPI's parser: the reason and the offset
            return 400, "body", f"the body is not valid JSON: {ctx['error']} (at character {loc[-1] if loc else '?'})"
        return 400, "body", f"the body is not valid JSON: {err.get('msg', '').removeprefix('Invalid JSON: ')}"
    types = ", ".join(registry)
    if kind == "union_tag_invalid":
        tag = (err.get("input") or {}).get("type")
        if not isinstance(tag, str):
            return (
                422,
                "type",
                f"field 'type' must be a string naming a job type, got {_short(tag)}; the types are: {types}",
            )
        return 422, "type", f"unknown job type {tag!r}; the types are: {types}"
    if kind == "union_tag_not_found":
        return 422, "type", f"field 'type' is required: it names the job type, one of: {types}"
    if not loc:  # the body itself
        if kind == "missing":
            return 422, "body", f"the body is required: {_BODY}"
        return 422, "body", f"the body must be {_BODY}, got {_short(err.get('input'))}"
    # Every error inside a request starts at the tag of its job type: <type>.<field>...
    jt, loc = registry.get(loc[0]), loc[1:]
    if jt is not None and loc[:1] == ["data"]:
        field, message = jobtypes.data_error(jt, {**err, "loc": loc[1:]}, prefix="data.")
        return 422, field, message
    field = ".".join(loc) or "body"
    if kind == "missing":
        return 422, field, f"field {field!r} is required"
    if kind == "extra_forbidden":
        return 422, field, f"field {field!r} is not allowed; the fields are: {', '.join(FIELDS)}"
    msg = err.get("msg", "is invalid")
    return 422, field, f"field {field!r}: {msg[:1].lower() + msg[1:]}, got {_short(err.get('input'))}"


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";")[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and not _is_json(content_type):
        status, body, _ = _not_json(content_type)
    else:
        status, body, _ = _validation_reply(exc.errors(), request.app.state.service.jobtypes)
    return Response(body, status_code=status, media_type="application/json")


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def _problem_reply(
    status: int, detail: str, field: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> Reply:
    body: dict[str, Any] = {"detail": detail}
    if field is not None:
        body["errors"] = [{"field": field, "message": detail}]
    return status, json.dumps(body).encode(), headers or []


def _not_json(content_type: str) -> Reply:
    detail = f"the body must be JSON, sent with 'Content-Type: application/json'; got {content_type or 'none'!r}"
    return _problem_reply(415, detail, "content-type")


def _validation_reply(errors: Sequence[Any], registry: jobtypes.Registry) -> Reply:
    found = [_describe_error(e, registry) for e in errors]
    status = 400 if any(s == 400 for s, _, _ in found) else 422
    listed = [{"field": f, "message": m} for s, f, m in found if s == status]
    return status, json.dumps({"detail": "; ".join(e["message"] for e in listed), "errors": listed}).encode(), []


def _error(
    status: int, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if field is not None:
        body["errors"] = [{"field": field, "message": detail}]
    return JSONResponse(body, status_code=status, headers=headers)


def _parse_id(job_id: str) -> int | None:
    return int(job_id) if job_id.isascii() and job_id.isdigit() and len(job_id) < 19 else None


# ---------------------------------------------------------------------- app


def create_app(config: ServiceConfig, registry: jobtypes.Registry | None = None) -> FastAPI:
    """The app; ``registry`` is the job types it serves (default: loaded from
    ``config.jobtypes``, the installed packages' and the built-in ones)."""
    if registry is None:
        registry = jobtypes.load_registry(config.jobtypes)
    service = Service(config, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.drain()

    app = FastAPI(
        title="poolbench job service",
        version=pools.__version__,
        description="Run named job types on a worker pool. A client names a type and gives its "
        "parameters as data; it never sends code.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.service = service
    # Starlette types a handler as taking any Exception; each of these takes the class it is registered for.
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(_Edge, service=service)

    gone = f"finished jobs are kept {config.retain_seconds:g}s, and at most the latest {config.retain_jobs} of them"

    async def submit_job(body: Any) -> Response:
        # Documents the operation; requests are answered by _Edge's fast path, which
        # ends in the same Service.submit (this body runs only without _Edge).
        status, payload, headers = await service.submit(body)
        return Response(
            payload,
            status_code=status,
            media_type="application/json",
            headers={k.decode(): v.decode() for k, v in headers},
        )

    # The body's type is made from the registry at run time; FastAPI reads it from
    # the signature (a string annotation would be looked up in this module).
    body = inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=service.request_type)
    submit_job.__signature__ = inspect.Signature([body], return_annotation=Response)  # type: ignore[attr-defined]
    app.post(
        "/jobs",
        status_code=202,
        response_model=Accepted,
        responses=_SUBMIT_RESPONSES,
        summary="Submit a job",
        description="Job types: " + "; ".join(f"{t.name}: {t.doc}" for t in registry.values()),
    )(submit_job)

    @app.get("/jobs/{job_id}", response_model=JobInfo, responses=_JOB_RESPONSES, summary="A job's status and result")
    async def get_job(job_id: str) -> Response:
        n = _parse_id(job_id)
        body = None if n is None else service.store.describe(n)
        if body is None:
            return _error(404, f"no job {job_id!r}: never accepted here, or its record expired ({gone})")
        return Response(body, media_type="application/json")

    @app.delete(
        "/jobs/{job_id}",
        response_model=JobInfo,
        responses={**_JOB_RESPONSES, 409: _problem("the job had already finished")},
        summary="Cancel a job",
    )
    async def cancel_job(job_id: str) -> Response:
        n = _parse_id(job_id)
        job = None if n is None else service.store.live_job(n)
        if job is not None and job.cancel():
            # A job of the asyncio backend, which runs on the server's loop, is an asyncio
            # future: its done-callbacks, the store's among them, run on the loop's next
            # turn rather than inside cancel() (other backends' ran inside it).
            await asyncio.sleep(0)
        body = None if n is None else service.store.describe(n)
        if body is None:
            return _error(404, f"no job {job_id!r}: never accepted here, or its record expired ({gone})")
        info = json.loads(body)
        if job is None or info["status"] != "cancelled":
            return JSONResponse(
                {"detail": f"job {n} had already finished ({info['status']}): nothing to cancel", "job": info},
                status_code=409,
            )
        return Response(body, media_type="application/json")

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus text format"},
            **_AUTH,
        },
        summary="Prometheus metrics",
    )
    async def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: 503 while draining",
        responses={
            503: {
                "model": Problem,
                "description": "draining",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            }
        },
    )
    async def readyz() -> Response:
        if service.draining or service.pool is None:
            return _error(503, "draining: this server is shutting down", headers={"Retry-After": service.retry_after()})
        return JSONResponse(
            {
                "status": "ready",
                "backend": config.backend,
                "workers": service.pool.workers,
                "queue_size": service.pool.queue_size,
            }
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            if config.token:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"}
                }
                for path, ops in schema["paths"].items():
                    if path not in OPEN_PATHS:
                        for op in ops.values():
                            op["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    if config.debug_endpoints:
        from .debug import add_debug_routes

        add_debug_routes(app, service)

    app.openapi = openapi  # type: ignore[method-assign]
    return app
