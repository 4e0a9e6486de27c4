"""The HTTP job service, against a real uvicorn on 127.0.0.1 (a free port, chosen by
the kernel: the server binds port 0 and prints the address it got).

Every server runs in its own process, is always stopped within a bound, and its
stderr goes to a file that a failing test prints.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

import pools
from poolbench.service.store import JobStore
from pools.testing.jobs import Gate

TOKEN = "t0ken-for-tests"
# The service takes any backend; these tests run on the core ones (a Dask backend's
# own tests cover it, and its cluster takes ~15 s to start on this machine).
BACKENDS = [b for b in ("thread", "process", "asyncio") if b in pools.available_backends()]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class Server:
    """``python -m poolbench.service`` on 127.0.0.1, port 0."""

    def __init__(
        self, tmp_path, *args: str, env: dict[str, str] | None = None, token: str | None = None, cwd=None
    ) -> None:
        self.log = tmp_path / f"server-{time.monotonic_ns()}.log"
        self._err = open(self.log, "w")  # noqa: SIM115 - the server's stderr for its life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poolbench.service", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        try:
            line = self._first_line(START_TIMEOUT)
            assert line.startswith("poolbench serve: listening on http://127.0.0.1:"), line + self.output()
            self.url = line.split()[4]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self.http = httpx.Client(base_url=self.url, headers=headers, timeout=START_TIMEOUT)
            # The socket listens already: this waits for the app's startup, no polling.
            assert self.http.get("/healthz").status_code == 200
        except Exception as e:
            self.stop()
            raise AssertionError(f"the server did not start: {e!r}" + self.output()) from e

    def _first_line(self, timeout: float) -> str:
        out = self.proc.stdout
        ready, _, _ = select.select([out], [], [], timeout)
        assert ready, f"the server printed no address within {timeout}s: {self.output()}"
        return out.readline().decode().strip()

    def output(self) -> str:
        self._err.flush()
        return "\n--- server log ---\n" + self.log.read_text()

    def post(self, body: dict, **kw) -> httpx.Response:
        return self.http.post("/jobs", json=body, **kw)

    def submit(self, body: dict) -> int:
        r = self.post(body)
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    def wait(self, job_id: int, timeout: float = 20.0) -> dict:
        """Poll GET /jobs/{id} until the job is finished (HTTP has no wake-up)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.http.get(f"/jobs/{job_id}").json()
            if info["status"] not in ("queued", "running"):
                return info
            assert time.monotonic() < deadline, f"job {job_id} still {info['status']} after {timeout}s"
            time.sleep(0.01)

    def stop(self, sig: int | None = signal.SIGTERM) -> int:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the server did not stop within {STOP_TIMEOUT}s" + self.output()) from None
        finally:
            if hasattr(self, "http"):
                self.http.close()
            self.proc.stdout.close()
            self._err.close()
        return rc


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Thread backend, 2 workers, 2 waiting jobs, a token (from the environment),
    a 2 KiB body limit and 8 retained results."""
    srv = Server(
        tmp_path_factory.mktemp("service"),
        "--backend",
        "thread",
        "--workers",
        "2",
        "--queue-size",
        "2",
        "--max-body",
        "2048",
        "--retain-jobs",
        "8",
        "--drain-timeout",
        "1",
        env={"POOLBENCH_TOKEN": TOKEN},
        token=TOKEN,
    )
    yield srv
    assert srv.stop() == 0, srv.output()


def test_the_command_line_imports_no_web_framework_and_binds_loopback():
    code = (
        "import sys, poolbench.cli\n"
        "args = poolbench.cli.command_parser('serve').parse_args([])\n"
        "print(args.host, 'fastapi' in sys.modules, 'uvicorn' in sys.modules, 'locust' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["127.0.0.1", "False", "False", "False"]


def test_probes_answer_without_a_token(server):
    anon = httpx.Client(base_url=server.url, timeout=10)
    with anon:
        assert anon.get("/healthz").json() == {"status": "ok"}
        ready = anon.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


@pytest.mark.parametrize(
    ("path", "method"),
    [("/jobs", "POST"), ("/jobs/1", "GET"), ("/jobs/1", "DELETE"), ("/metrics", "GET"), ("/openapi.json", "GET")],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_everything_else_needs_the_token(server, path, method, auth):
    headers = {"Authorization": auth} if auth else {}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as anon:
        r = anon.request(method, path, json={"type": "noop"} if method == "POST" else None)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in r.json()["detail"]


def test_openapi_describes_the_api_and_its_auth(server):
    spec = server.http.get("/openapi.json").json()
    assert {"/jobs", "/jobs/{job_id}", "/metrics", "/healthz", "/readyz"} <= set(spec["paths"])
    post = spec["paths"]["/jobs"]["post"]
    assert {"202", "413", "422", "503"} <= set(post["responses"])
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ({"type": "noop"}, lambda r: r is None),
        ({"type": "echo", "data": {"value": {"a": [1, "x"]}}}, lambda r: r == {"a": [1, "x"]}),
        ({"type": "sleep", "data": {"ms": 1}}, lambda r: r == 1.0),
        ({"type": "cpu", "data": {"ms": 1}}, lambda r: isinstance(r, int) and r > 0),
        ({"type": "heavy_tail", "data": {"max_ms": 3}}, lambda r: 1.0 <= r <= 3.0),
        ({"type": "fail", "data": {"probability": 0}, "priority": 7}, lambda r: r == "ok"),
    ],
)
def test_a_job_runs_and_its_result_can_be_fetched(server, body, check):
    r = server.post(body)
    assert r.status_code == 202
    accepted = r.json()
    assert accepted["status"] == "accepted" and r.headers["location"] == f"/jobs/{accepted['job_id']}"
    info = server.wait(accepted["job_id"])
    assert info["status"] == "succeeded", info
    assert check(info["result"]), info
    assert info["type"] == body["type"] and info["priority"] == body.get("priority", 0)
    assert info["attempts"] == 1 and info["error"] is None
    assert info["queue_wait"] >= 0 and info["run_time"] >= 0 and info["finished_at"] >= info["accepted_at"]


def test_a_failing_job_is_retried_then_reported_failed(server):
    info = server.wait(server.submit({"type": "fail", "retries": 2}))
    assert info["status"] == "failed" and info["attempts"] == 3
    assert info["error"].startswith("JobTypeFailure: failed on purpose") and info["result"] is None


def test_a_job_past_its_timeout_is_timed_out(server):
    info = server.wait(server.submit({"type": "sleep", "data": {"ms": 3000}, "timeout": 0.05}))
    assert info["status"] == "timed_out" and "JobTimeout" in info["error"], info


def test_cancel_a_running_job_then_cancel_again(server):
    job_id = server.submit({"type": "sleep", "data": {"ms": 20000}})
    r = server.http.delete(f"/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert server.http.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
    again = server.http.delete(f"/jobs/{job_id}")
    assert again.status_code == 409 and "already finished (cancelled)" in again.json()["detail"]


def test_a_full_queue_answers_503_with_retry_after(server):
    # 2 workers + 2 waiting: exactly 4 jobs fit, however fast the workers take them.
    held = [server.submit({"type": "sleep", "data": {"ms": 20000}}) for _ in range(4)]
    try:
        r = server.post({"type": "noop"})
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert "queue is full" in r.json()["detail"]
    finally:
        for job_id in held:
            assert server.http.delete(f"/jobs/{job_id}").status_code == 200
    assert server.post({"type": "noop"}).status_code == 202  # room again


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"type": "sleep", "data": {"ms": -1}}, 422, ["data.ms", "greater than or equal to 0", "-1"]),
        ({"type": "sleep"}, 422, ["data.ms", "required"]),
        ({"type": "cpu", "data": {"ms": 1e9}}, 422, ["data.ms", "60000"]),
        ({"type": "fail", "data": {"probability": 2}}, 422, ["data.probability", "less than or equal to 1", "2"]),
        ({"type": "sleep", "data": {"ms": "5"}}, 422, ["data.ms", "number", "'5'"]),
        (b'{"type": "echo", "data": {"value": NaN}}', 422, ["data.value", "plain JSON"]),
        ({"type": "echo", "data": {"valu": 1}}, 422, ["data.valu", "'echo' takes no field", "value"]),
        ({"type": "nope"}, 422, ["unknown job type 'nope'", "noop", "heavy_tail"]),
        ({"data": {}}, 422, ["'type'", "required"]),
        ({"type": 3}, 422, ["'type'", "string", "3"]),
        ({"type": "noop", "timeout": 0}, 422, ["'timeout'", "greater than 0"]),
        ({"type": "noop", "timeout": 1e9}, 422, ["'timeout'", "less than or equal to 3600"]),
        ({"type": "noop", "retries": 11}, 422, ["'retries'", "less than or equal to 10"]),
        ({"type": "noop", "retries": -1}, 422, ["'retries'", "greater than or equal to 0"]),
        ({"type": "noop", "priority": "high"}, 422, ["'priority'", "integer", "'high'"]),
        ({"type": "noop", "priority": True}, 422, ["'priority'", "integer"]),
        ({"type": "noop", "data": []}, 422, ["'data'", "object"]),
        ({"type": "sleep", "data": [1]}, 422, ["'data'", "object", "'sleep'", "ms"]),
        ({"type": "noop", "code": "print(1)"}, 422, ["'code'", "not allowed", "type, data"]),
        ([1, 2], 422, ["JSON object", "type, data"]),
        ("not json", 400, ["not valid JSON"]),
        (b"", 422, ["body is required"]),
        ("form", 415, ["Content-Type: application/json"]),
    ],
)
def test_a_bad_body_gets_4xx_naming_the_field_and_constraint(server, body, status, words):
    if body == "not json":
        r = server.http.post("/jobs", content=b'{"type": "noop",', headers={"content-type": "application/json"})
    elif isinstance(body, bytes):
        r = server.http.post("/jobs", content=body, headers={"content-type": "application/json"})
    elif body == "form":
        r = server.http.post("/jobs", data={"type": "noop"})
    else:
        r = server.post(body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert all(w in detail for w in words), detail


def test_a_body_over_the_limit_gets_413(server):
    big = {"type": "echo", "data": {"value": "x" * 3000}}
    r = server.post(big)
    assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        yield b'{"type": "echo", "data": {"value": "'
        for _ in range(10):
            yield b"y" * 300
        yield b'"}}'

    r = server.http.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    small = server.http.post(
        "/jobs", content=iter([b'{"type": ', b'"noop"}']), headers={"content-type": "application/json"}
    )
    assert small.status_code == 202, small.text


@pytest.mark.parametrize("job_id", ["999999999", "abc", "-1", "1.5", "99999999999999999999999"])
def test_an_unknown_job_is_404(server, job_id):
    for method in ("GET", "DELETE"):
        r = server.http.request(method, f"/jobs/{job_id}")
        assert r.status_code == 404 and "never accepted here" in r.json()["detail"], r.text


def test_finished_jobs_are_kept_within_the_count_bound(server):
    first = server.submit({"type": "noop"})
    server.wait(first)
    later = [server.submit({"type": "noop"}) for _ in range(8)]
    for job_id in later:
        server.wait(job_id)
    r = server.http.get(f"/jobs/{first}")
    assert r.status_code == 404 and "at most the latest 8" in r.json()["detail"]
    assert server.http.get(f"/jobs/{later[0]}").status_code == 200


def test_metrics_show_the_pool_and_the_requests(server):
    server.wait(server.submit({"type": "noop"}))
    r = server.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in (
        'poolbench_pool_workers{backend="thread"} 2.0',
        'poolbench_pool_submitted_total{backend="thread"}',
        'poolbench_pool_queue_wait_seconds{backend="thread",quantile="0.99"}',
        'poolbench_http_requests_total{method="POST",route="/jobs",status="202"}',
        'poolbench_http_requests_total{method="GET",route="/jobs/{job_id}",status="200"}',
        'poolbench_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/jobs"}',
        "poolbench_service_jobs_retained ",
        "poolbench_service_refused_queue_full_total ",
    ):
        assert needle in text, needle
    submitted = next(line for line in text.splitlines() if line.startswith("poolbench_pool_submitted_total"))
    assert float(submitted.split()[-1]) >= 1


# ------------------------------------------------------------------ every backend, and SIGTERM


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_serves_jobs(tmp_path, backend):
    srv = Server(tmp_path, "--backend", backend, "--workers", "2", "--drain-timeout", "2")
    try:
        assert srv.wait(srv.submit({"type": "echo", "data": {"value": backend}}))["result"] == backend
        assert srv.wait(srv.submit({"type": "sleep", "data": {"ms": 1}}))["status"] == "succeeded"
        assert srv.wait(srv.submit({"type": "fail", "retries": 1}))["attempts"] == 2
        slow = srv.submit({"type": "sleep", "data": {"ms": 20000}, "timeout": 0.1})
        assert srv.wait(slow)["status"] == "timed_out"
        held = srv.submit({"type": "sleep", "data": {"ms": 20000}})
        assert srv.http.delete(f"/jobs/{held}").json()["status"] == "cancelled"
    finally:
        rc = srv.stop()
    assert rc == 0, srv.output()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_drains_without_losing_an_accepted_job(tmp_path, backend):
    report = tmp_path / "drain.json"
    srv = Server(
        tmp_path,
        "--backend",
        backend,
        "--workers",
        "4",
        "--queue-size",
        "10",
        "--drain-timeout",
        "3",
        "--drain-report",
        str(report),
    )
    try:
        long = [srv.submit({"type": "sleep", "data": {"ms": 60000}}) for _ in range(2)]
        short = [srv.submit({"type": "sleep", "data": {"ms": 50}}) for _ in range(4)]
        srv.proc.send_signal(signal.SIGTERM)
        # The long jobs hold the drain open until its deadline: meanwhile the server
        # refuses new work, says it is not ready, and still answers about the old jobs.
        deadline = time.monotonic() + 10
        while (ready := srv.http.get("/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "readiness never turned 503 after SIGTERM"
            time.sleep(0.01)
        assert ready.status_code == 503 and int(ready.headers["retry-after"]) >= 1
        refused = srv.post({"type": "noop"})
        assert refused.status_code == 503 and "draining" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        assert [srv.wait(j)["status"] for j in short] == ["succeeded"] * 4
        assert srv.http.get("/healthz").status_code == 200
    finally:
        rc = srv.stop(None)  # no second SIGTERM: that one would cancel every job at once
    assert rc == 0, srv.output()
    result = json.loads(report.read_text())
    assert result["accepted"] == len(long) + len(short)
    assert result["lost"] == 0
    assert result["succeeded"] == len(short) and result["cancelled"] == len(long)
    assert sorted(result["cancelled_running_ids"]) == sorted(long)
    assert "drained:" in srv.log.read_text()


# ------------------------------------------------------------------ the job store, alone


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _finished_jobs(make_pool, n, value="v"):
    pool = make_pool("thread", workers=1)
    jobs = [pool.submit(lambda: value) for _ in range(n)]
    for job in jobs:
        job.result(10)
    return jobs


def test_the_store_forgets_finished_jobs_by_age(make_pool):
    clock = _Clock()
    store = JobStore(max_jobs=100, max_age=60, clock=clock)
    old, new = _finished_jobs(make_pool, 2)
    store.add(old, "echo")
    store.finish(old)
    clock.now += 30
    store.add(new, "echo")
    store.finish(new)
    clock.now += 31  # old finished 61 s ago, new 31 s ago
    assert store.describe(old.job_id) is None
    assert json.loads(store.describe(new.job_id))["result"] == "v"
    assert store.counts() == {
        "live": 0,
        "retained": 1,
        "retained_bytes": store.counts()["retained_bytes"],
        "evicted": 1,
    }


def test_the_store_bounds_the_bytes_of_results(make_pool):
    jobs = _finished_jobs(make_pool, 5, value="x" * 1000)
    store = JobStore(max_jobs=100, max_bytes=3 * 1500)
    for job in jobs:
        store.add(job, "echo")
        store.finish(job)
    assert store.counts()["retained"] == 3 and store.counts()["retained_bytes"] <= 3 * 1500
    assert store.describe(jobs[0].job_id) is None and store.describe(jobs[-1].job_id) is not None


def test_the_store_keeps_live_jobs_whatever_the_bounds(make_pool):
    pool = make_pool("thread", workers=1)
    store = JobStore(max_jobs=0, max_age=0, max_bytes=0)
    with Gate() as gate:
        job = pool.submit(gate.wait)
        store.add(job, "noop")
        assert json.loads(store.describe(job.job_id))["status"] in ("queued", "running")
        gate.open()
        job.result(10)
    store.finish(job)
    assert store.describe(job.job_id) is None  # max_jobs=0: gone once finished


def test_a_job_is_shown_finished_only_with_its_result(make_pool):
    # The pool ends a job before its done-callbacks run: a client polling in between
    # saw "succeeded" with a null result (under coverage, often).
    pool = make_pool("thread", workers=1)
    store = JobStore()
    entered, release = threading.Event(), threading.Event()

    def slow_callback(_job):
        entered.set()
        release.wait(10)

    with Gate() as gate:
        job = pool.submit(lambda: gate.wait() or "done")
        store.add(job, "echo")
        job.add_done_callback(slow_callback)  # runs before the store hears of the end
        job.add_done_callback(store.finish)
        stored = threading.Event()
        job.add_done_callback(lambda j: stored.set())  # callbacks run in order: after store.finish
        gate.open()
        assert entered.wait(10)
        try:
            assert job.status == "succeeded"  # the pool's view
            assert json.loads(store.describe(job.job_id))["status"] == "running"
        finally:
            release.set()
    assert stored.wait(10)  # result() may wake before the callbacks have run
    info = json.loads(store.describe(job.job_id))
    assert (info["status"], info["result"]) == ("succeeded", "done")


# ------------------------------------------------------------------ generated inputs (schemathesis)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """No token; room for every generated job, so that a 503 would be a real fault."""
    srv = Server(
        tmp_path_factory.mktemp("schemathesis"),
        "--backend",
        "thread",
        "--workers",
        "4",
        "--queue-size",
        "10000",
        "--drain-timeout",
        "1",
        "--max-body",
        "4096",
    )
    yield srv
    assert srv.stop() == 0, srv.output()


OPERATIONS = [
    ("/jobs", "POST"),
    ("/jobs/{job_id}", "GET"),
    ("/jobs/{job_id}", "DELETE"),
    ("/metrics", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
]


@pytest.fixture(scope="module")
def api_schema(open_server):
    import schemathesis

    return schemathesis.openapi.from_url(f"{open_server.url}/openapi.json")


def test_the_schema_has_the_operations_fuzzed_below(api_schema):
    found = {(op.ok().path, op.ok().method.upper()) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# schemathesis's pytest plugin does not run under this pytest (9), so the cases are
# drawn with hypothesis directly: valid and invalid inputs, a bounded number, derandomized.
# Invalid inputs exist only where the schema constrains something: the body of POST /jobs.
@pytest.mark.parametrize(
    ("path", "method", "mode"), [(*op, "positive") for op in OPERATIONS] + [("/jobs", "POST", "negative")]
)
def test_generated_requests_never_get_a_5xx(api_schema, open_server, path, method, mode):
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode

    operation = api_schema[path][method]
    seen: list[int] = []

    @settings(
        max_examples=40 if method == "POST" else 10,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def check(case):
        response = case.call(base_url=open_server.url, timeout=10)
        seen.append(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.body!r}: {response.text}"

    check()
    assert seen, "no request was made"
