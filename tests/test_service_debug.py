"""``poolbench serve --debug-endpoints`` on a real uvicorn at 127.0.0.1: each /debug
endpoint returns what it says, is absent without the flag, needs the token, and is
bounded (the profile's cap, one profile at a time)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import httpx
import pytest
from test_service import TOKEN, Server

from poolbench.service.debug import MAX_PROFILE_SECONDS, find_py_spy

PY_SPY = find_py_spy()


def _py_spy_cannot_attach() -> str | None:
    """Why py-spy cannot profile a child of this process here, or None."""
    if PY_SPY is None:
        return "py-spy is not installed (pip install 'poolbench[debug]')"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        # Only once the child runs its program: py-spy fails on an interpreter still
        # starting up ("int_traces"), which said nothing about ptrace and skipped the tests.
        child.stdout.readline()
        r = subprocess.run([PY_SPY, "dump", "--pid", str(child.pid)], capture_output=True, text=True, timeout=30)
    finally:
        child.stdin.close()
        child.stdout.close()
        child.wait(10)
    if r.returncode != 0:
        return f"py-spy cannot attach to a process here (ptrace denied?): {(r.stderr or r.stdout).strip()[-200:]}"
    return None


needs_py_spy = pytest.mark.skipif((why := _py_spy_cannot_attach()) is not None, reason=why or "py-spy can attach")


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory):
    """Thread backend, 2 workers, the debug endpoints, a token."""
    srv = Server(
        tmp_path_factory.mktemp("debug"),
        "--backend",
        "thread",
        "--workers",
        "2",
        "--debug-endpoints",
        "--drain-timeout",
        "1",
        env={"POOLBENCH_TOKEN": TOKEN},
        token=TOKEN,
    )
    yield srv
    assert srv.stop() == 0, srv.output()


def _running(server, body: dict) -> int:
    """Submit a job and wait until the service says it runs."""
    job_id = server.submit(body)
    deadline_info = server.http.get(f"/jobs/{job_id}").json()
    for _ in range(2000):  # GET has no wake-up: a bounded poll
        if deadline_info["status"] == "running":
            return job_id
        deadline_info = server.http.get(f"/jobs/{job_id}").json()
    raise AssertionError(f"job {job_id} never ran: {deadline_info}")


def test_threads_names_the_running_job_and_every_thread(debug_server):
    job_id = _running(debug_server, {"type": "sleep", "data": {"ms": 20000}})
    try:
        dump = debug_server.http.get("/debug/threads").json()
        mine = [j for j in dump["running_jobs"] if j["job_id"] == job_id]
        assert mine, dump["running_jobs"]
        assert mine[0]["type"] == "sleep" and mine[0]["attempt"] == 1 and mine[0]["age"] >= 0
        assert mine[0]["function"].endswith("sleep")
        names = [t["name"] for t in dump["threads"]]
        assert "MainThread" in names
        stacks = "\n".join(f for t in dump["threads"] for f in t["stack"])
        assert "in sleep" in stacks or "in _pause" in stacks  # the job's own frame, on its worker thread
        text = debug_server.http.get("/debug/threads", params={"format": "text"}).text
        assert f"job {job_id} type=sleep attempt=1" in text and "thread 'MainThread'" in text
    finally:
        debug_server.http.delete(f"/jobs/{job_id}")


def test_tasks_lists_the_loops_tasks(debug_server):
    body = debug_server.http.get("/debug/tasks").json()
    assert body["loop"] == "server" and "runs no asyncio tasks" in body["note"]
    stacks = "\n".join(f for t in body["tasks"] for f in t["stack"])
    # the server's own task, and the one serving this very request
    assert "uvicorn/server.py" in stacks and "in run_asgi" in stacks, body


def test_heap_lists_sites_then_their_growth(debug_server):
    first = debug_server.http.get("/debug/heap").json()
    assert first["tracing_since"] is not None
    for _ in range(30):
        debug_server.submit({"type": "echo", "data": {"value": "x" * 100}})
    second = debug_server.http.get("/debug/heap", params={"top": 10}).json()
    assert second["tracing_since"] == first["tracing_since"]
    assert second["top"] and all(s["bytes"] > 0 and ":" in s["site"] for s in second["top"])
    assert second["growth"], second
    assert debug_server.http.delete("/debug/heap").json()["was_tracing"] is True


def test_profile_beyond_the_cap_is_refused_naming_the_cap(debug_server):
    r = debug_server.http.get("/debug/profile", params={"seconds": MAX_PROFILE_SECONDS + 1})
    assert r.status_code == 400
    assert (
        f"at most {MAX_PROFILE_SECONDS} (the cap of /debug/profile), got {MAX_PROFILE_SECONDS + 1}"
        in r.json()["detail"]
    )
    r = debug_server.http.get("/debug/profile", params={"seconds": 1, "format": "pprof"})
    assert r.status_code == 400 and "'svg'" in r.json()["detail"]


@needs_py_spy
def test_profile_names_a_function_the_job_ran_and_runs_one_at_a_time(debug_server):
    job_id = _running(debug_server, {"type": "cpu", "data": {"ms": 20000}})
    try:
        got: dict[str, httpx.Response] = {}
        started = threading.Event()

        def first() -> None:
            with httpx.Client(base_url=debug_server.url, headers=debug_server.http.headers, timeout=60) as c:
                started.set()
                got["svg"] = c.get("/debug/profile", params={"seconds": 2})

        t = threading.Thread(target=first)
        t.start()
        started.wait(10)
        # Asked while the first records (2 s): 409. Asked before the first reached the
        # server, a request beyond the cap gets its 400 at once: a bounded retry.
        for _ in range(1000):
            second = debug_server.http.get("/debug/profile", params={"seconds": MAX_PROFILE_SECONDS + 1})
            if second.status_code == 409 or not t.is_alive():
                break
            assert second.status_code == 400, second.text
        t.join(60)
        assert second.status_code == 409 and "one at a time" in second.json()["detail"]
        svg = got["svg"]
        assert svg.status_code == 200, svg.text
        assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content[:2000]
        assert b"cpu (scenarios/jobtypes.py" in svg.content or b"cpu (" in svg.content

        speed = debug_server.http.get("/debug/profile", params={"seconds": 1, "format": "speedscope"})
        assert speed.status_code == 200, speed.text
        frames = {f["name"] for f in json.loads(speed.content)["shared"]["frames"]}
        assert "cpu" in frames, sorted(frames)[:40]
    finally:
        debug_server.http.delete(f"/jobs/{job_id}")


@needs_py_spy
def test_profile_includes_the_process_backends_workers(tmp_path):
    srv = Server(tmp_path, "--backend", "process", "--workers", "1", "--debug-endpoints", "--drain-timeout", "1")
    try:
        job_id = _running(srv, {"type": "cpu", "data": {"ms": 20000}})
        r = srv.http.get("/debug/profile", params={"seconds": 2, "format": "speedscope"})
        assert r.status_code == 200, r.text
        profile = json.loads(r.content)
        frames = {f["name"] for f in profile["shared"]["frames"]}
        assert "cpu" in frames
        # The job ran in the worker process, which py-spy followed: a profile of another pid.
        pids = {p["name"].split()[1] for p in profile["profiles"]}
        assert pids - {str(srv.proc.pid)}, pids
        srv.http.delete(f"/jobs/{job_id}")
    finally:
        assert srv.stop() == 0, srv.output()


def test_without_the_flag_there_are_no_debug_endpoints(tmp_path):
    srv = Server(tmp_path, "--backend", "thread", "--workers", "1")
    try:
        for path in ("/debug/threads", "/debug/tasks", "/debug/profile", "/debug/heap"):
            assert srv.http.get(path).status_code == 404, path
    finally:
        assert srv.stop() == 0, srv.output()


@pytest.mark.parametrize("path", ["/debug/threads", "/debug/tasks", "/debug/heap", "/debug/profile?seconds=1"])
def test_debug_endpoints_need_the_token(debug_server, path):
    with httpx.Client(base_url=debug_server.url, timeout=10) as anon:
        assert anon.get(path).status_code == 401
    with httpx.Client(base_url=debug_server.url, timeout=10, headers={"Authorization": "Bearer wrong"}) as wrong:
        assert wrong.get(path).status_code == 401


def test_asyncio_pool_tasks_are_listed_with_their_stacks(tmp_path):
    srv = Server(tmp_path, "--backend", "asyncio", "--workers", "2", "--debug-endpoints", "--drain-timeout", "1")
    try:
        job_id = _running(srv, {"type": "sleep", "data": {"ms": 20000}})
        body = srv.http.get("/debug/tasks").json()
        assert body["loop"] == "pool" and body["note"] is None
        stacks = "\n".join(f for t in body["tasks"] for f in t["stack"])
        assert "in asleep" in stacks, body["tasks"]
        # No token here: only requests to a loopback name, and none a web page sent
        for headers in (
            {"Host": "evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "http://evil.example"},
        ):
            refused = srv.http.get("/debug/threads", headers=headers)
            assert refused.status_code == 403 and "/debug" in refused.json()["detail"], (headers, refused.text)
        assert srv.http.get("/debug/threads", headers={"Origin": srv.url, "Sec-Fetch-Site": "same-origin"}).is_success
        srv.http.delete(f"/jobs/{job_id}")
    finally:
        assert srv.stop() == 0, srv.output()


def test_debug_endpoints_beyond_loopback_need_a_token():
    r = subprocess.run(
        [sys.executable, "-m", "poolbench.service", "--host", "0.0.0.0", "--port", "0", "--debug-endpoints"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if k != "POOLBENCH_TOKEN"},
    )
    assert r.returncode == 2 and "--debug-endpoints on 0.0.0.0 without a token" in r.stderr
