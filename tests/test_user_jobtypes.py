"""Job types of the user's own: a module defining ``JOBTYPES``, named by ``--jobtypes``
(the current directory importable) or by an installed package's entry point; served
by a real ``poolbench serve`` (uvicorn on 127.0.0.1), load-tested by a real locust run,
and every way to get one wrong refused at start-up with the reason."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile

import pytest
from test_service import Server

import pools
from scenarios import jobtypes
from scenarios.imports import LoadError

T = 60.0

# What a user writes: a model for the data, a plain and a coroutine form.
USER_MODULE = '''
from pydantic import BaseModel, ConfigDict, Field

from scenarios.jobtypes import JobType


class ScaleData(BaseModel):
    """Multiply a list of numbers."""

    model_config = ConfigDict(extra="forbid")

    values: list[float] = Field(min_length=1, max_length=100)
    factor: float = Field(default=2.0, gt=0)


def scale(data):
    return [v * data["factor"] for v in data["values"]]


async def ascale(data):
    return scale(data)


JOBTYPES = [JobType("scale", ScaleData, sync=scale, coro=ascale, example={"values": [1, 2]})]
'''

_names = itertools.count()


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """write_module(text) -> the name of a new module in tmp_path, importable from
    there (each test's names are new: sys.modules keeps what was imported)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader adds the current directory

    def write(text: str, name: str | None = None) -> str:
        name = name or f"user_jobtypes_{os.getpid()}_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        return name

    return write


# ------------------------------------------------------------------ the registry, in this process


def test_a_module_in_the_current_directory_adds_its_types(write_module, make_pool):
    name = write_module(USER_MODULE)
    registry = jobtypes.load_registry([name], entry_points=False)
    assert list(registry) == [*jobtypes.BUILTIN, "scale"]
    assert registry.source("scale") == f"module {name!r}"
    assert registry["scale"].doc == "Multiply a list of numbers."
    params = registry.validate("scale", {"values": [1, 2]})
    assert params == {"values": [1.0, 2.0], "factor": 2.0}
    for backend in ("thread", "asyncio"):
        pool = make_pool(backend, workers=1)
        assert pool.submit(registry.job_for(pool, "scale"), params).result(T) == [2.0, 4.0]
    with pytest.raises(pools.InvalidArgument, match=r"'values'.*at least 1"):
        registry.validate("scale", {"values": []})
    registry.add_module(name)  # named twice (by --jobtypes and an entry point): loaded once
    assert list(registry).count("scale") == 1


def test_the_example_module_in_the_readme(make_pool, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    registry = jobtypes.load_registry(["examples.jobtypes_example"], entry_points=False)
    resize = registry["resize"]
    params = registry.validate("resize", resize.example)
    pool = make_pool("thread", workers=1)
    assert pool.submit(registry.job_for(pool, "resize"), params).result(T) == {"width": 16, "height": 12, "mean": 127}
    with pytest.raises(pools.InvalidArgument, match=r"'widht'.*width, height, factor"):
        registry.validate("resize", {"width": 4, "height": 4, "widht": 3})


_MODEL = """
from dataclasses import dataclass
from pydantic import BaseModel
from scenarios.jobtypes import JobType

class D(BaseModel):
    n: int

@dataclass
class Plain:
    n: int

def f(data):
    return 1

async def af(data):
    return 1
"""


@pytest.mark.parametrize(
    ("jobtypes_line", "words"),
    [
        ("JOBTYPES = [JobType('sleep', D, sync=f)]", ["'sleep'", "defined twice", "built-in", "rename one"]),
        ("JOBTYPES = [JobType('x', D, sync=f), JobType('x', D, sync=f)]", ["'x'", "defined twice", "module"]),
        ("JOBTYPES = [JobType('x', sync=f)]", ["'x'", "no data model", "BaseModel subclass"]),
        ("JOBTYPES = [JobType('x', Plain, sync=f)]", ["'x'", "pydantic BaseModel subclass", "Plain"]),
        ("JOBTYPES = [JobType('x', D(n=1), sync=f)]", ["'x'", "an instance of D"]),
        ("JOBTYPES = [JobType('x', dict, sync=f)]", ["'x'", "pydantic BaseModel subclass", "dict"]),
        ("JOBTYPES = [JobType('x', D)]", ["'x'", "no job function", "sync=", "coro="]),
        ("JOBTYPES = [JobType('x', D, sync=af)]", ["'x'", "sync=", "coro="]),
        ("JOBTYPES = [JobType('x', D, coro=f)]", ["'x'", "coro=", "async def"]),
        ("JOBTYPES = [JobType('re:size', D, sync=f)]", ["'re:size'", "letters"]),
        ("JOBTYPES = [JobType('x', D, sync=f, example={'n': 'many'})]", ["'x'", "example", "'n'"]),
        ("JOBTYPES = [{'name': 'x'}]", ["JobType values", "'name'"]),
        ("JOBTYPES = JobType('x', D, sync=f)", ["list of JobType"]),
        ("TYPES = [JobType('x', D, sync=f)]", ["defines no JOBTYPES", "JOBTYPES = ["]),
        ("import not_installed_dependency_xyz", ["failed to import", "not_installed_dependency_xyz"]),
        ("raise RuntimeError('broken at import')", ["failed to import", "RuntimeError: broken at import"]),
    ],
)
def test_a_wrong_module_is_refused_naming_what_is_wrong(write_module, jobtypes_line, words):
    name = write_module(_MODEL + jobtypes_line + "\n")
    with pytest.raises(LoadError) as info:
        jobtypes.load_registry([name], entry_points=False)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert name in str(info.value)


def test_two_modules_defining_one_name_are_both_named(write_module):
    first, second = write_module(USER_MODULE), write_module(USER_MODULE)
    with pytest.raises(jobtypes.JobTypeError) as info:
        jobtypes.load_registry([first, second], entry_points=False)
    assert f"module {first!r} and by module {second!r}" in str(info.value)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("no_such_pkg_xyz.jobtypes", ["'no_such_pkg_xyz.jobtypes'", "no module named 'no_such_pkg_xyz'", "install"]),
        ("my pkg", ["'my pkg'", "not a module path"]),
        ("mypkg:JOBTYPES", ["'mypkg:JOBTYPES'", "not a module path"]),
    ],
)
def test_a_bad_module_path_is_refused(write_module, path, words):
    with pytest.raises(LoadError) as info:
        jobtypes.load_registry([path], entry_points=False)
    assert all(w in str(info.value) for w in words), str(info.value)


# ------------------------------------------------------------------ an installed package: its entry point


def _install(tmp_path, dist: str, module_text: str) -> str:
    """Build a wheel of package ``dist`` (``dist/jobtypes.py``, an entry point in group
    poolbench.jobtypes naming it) and pip-install it into a directory of its own;
    return that directory, for sys.path."""
    wheel = tmp_path / f"{dist}-1.0-py3-none-any.whl"
    info = f"{dist}-1.0.dist-info"
    files = {
        f"{dist}/__init__.py": "",
        f"{dist}/jobtypes.py": module_text,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: poolbench-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[poolbench.jobtypes]\n{dist} = {dist}.jobtypes\n",
    }
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{info}/RECORD", "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n")
    site = tmp_path / f"site-{dist}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (site / info / "entry_points.txt").exists()
    return str(site)


def test_an_installed_package_provides_its_types_through_its_entry_point(tmp_path):
    site = _install(tmp_path, "scalepkg", USER_MODULE)
    env = {"PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")])}
    srv = Server(tmp_path, "--backend", "thread", "--workers", "1", "--drain-timeout", "2", env=env)
    try:
        info = srv.wait(srv.submit({"type": "scale", "data": {"values": [1.5], "factor": 4}}))
        assert info["status"] == "succeeded" and info["result"] == [6.0], info
        schema = srv.http.get("/openapi.json").json()["components"]["schemas"]
        assert set(schema["ScaleData"]["properties"]) == {"values", "factor"}
    finally:
        assert srv.stop() == 0, srv.output()


def test_a_broken_entry_point_names_the_package(tmp_path, monkeypatch):
    site = _install(tmp_path, "brokenpkg", _MODEL + "JOBTYPES = [JobType('x', sync=f)]\n")
    monkeypatch.syspath_prepend(site)
    with pytest.raises(jobtypes.JobTypeError) as info:
        jobtypes.load_registry()
    message = str(info.value)
    assert "entry point 'brokenpkg' = 'brokenpkg.jobtypes'" in message and "from brokenpkg" in message, message
    assert "no data model" in message


# ------------------------------------------------------------------ poolbench serve


def _serve_fails(tmp_path, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "poolbench", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=T,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "listening" not in run.stdout  # refused before binding
    return run.stderr


@pytest.mark.parametrize(
    ("text", "backend", "words"),
    [
        (
            _MODEL + "JOBTYPES = [JobType('lam', D, sync=lambda data: 1)]\n",
            "process",
            ["'lam'", "cannot run on the 'process' backend", "pickle", "top level"],
        ),
        (_MODEL + "JOBTYPES = [JobType('x', D, sync=f)]\n", "asyncio", ["'x'", "no coroutine form", "coro="]),
        (_MODEL + "JOBTYPES = [JobType('x', D, coro=af)]\n", "thread", ["'x'", "no plain form", "sync="]),
        (_MODEL + "JOBTYPES = [JobType('echo', D, sync=f)]\n", "thread", ["'echo'", "defined twice"]),
        (_MODEL + "JOBTYPES = [JobType('x', Plain, sync=f)]\n", "thread", ["'x'", "pydantic BaseModel"]),
    ],
)
def test_serve_refuses_a_wrong_job_type_at_start_up(tmp_path, text, backend, words):
    (tmp_path / "usertypes.py").write_text(text)
    err = _serve_fails(tmp_path, "--backend", backend, "--jobtypes", "usertypes")
    assert err.startswith("poolbench serve: ") and all(w in err for w in words), err


def test_serve_refuses_a_module_it_cannot_find(tmp_path):
    err = _serve_fails(tmp_path, "--jobtypes", "usertypes_missing")
    assert "'usertypes_missing'" in err and "no module named" in err and str(tmp_path) in err, err


@pytest.fixture(scope="module")
def user_server(tmp_path_factory):
    """The process backend (the job function goes to the workers by reference, and
    they import the user's module), the module found in the server's current directory."""
    where = tmp_path_factory.mktemp("usertypes")
    (where / "usertypes.py").write_text(USER_MODULE)
    srv = Server(
        where, "--backend", "process", "--workers", "2", "--drain-timeout", "2", "--jobtypes", "usertypes", cwd=where
    )
    yield srv
    assert srv.stop() == 0, srv.output()


def test_a_user_job_type_runs_and_its_result_can_be_fetched(user_server):
    r = user_server.post({"type": "scale", "data": {"values": [1, 2.5]}, "priority": 3})
    assert r.status_code == 202, r.text
    info = user_server.wait(r.json()["job_id"])
    assert info["status"] == "succeeded" and info["result"] == [2.0, 5.0], info
    assert info["type"] == "scale" and info["priority"] == 3
    assert user_server.wait(user_server.submit({"type": "noop"}))["status"] == "succeeded"  # built-ins too
    metrics = user_server.http.get("/metrics").text
    assert re.search(r'^poolbench_service_jobs_accepted_total\{type="scale"\} [1-9]', metrics, re.M), metrics


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({}, ["data.values", "required"]),
        ({"values": []}, ["data.values", "at least 1"]),
        ({"values": [1], "factor": 0}, ["data.factor", "greater than 0", "got 0"]),
        ({"values": ["a"]}, ["data.values.0", "number", "'a'"]),
        ({"values": [1], "scale": 2}, ["data.scale", "'scale' takes no field", "values, factor"]),
        ([1], ["'data'", "object", "values, factor"]),
    ],
)
def test_a_bad_body_of_a_user_type_gets_422_naming_the_field(user_server, data, words):
    r = user_server.post({"type": "scale", "data": data})
    assert r.status_code == 422, r.text
    body = r.json()
    assert all(w in body["detail"] for w in words), body
    assert body["errors"][0]["field"] == words[0].strip("'")


def test_an_unknown_type_lists_the_user_types_too(user_server):
    r = user_server.post({"type": "scael", "data": {}})
    assert r.status_code == 422 and "unknown job type 'scael'" in r.json()["detail"]
    assert "scale" in r.json()["detail"] and "noop" in r.json()["detail"]


def test_openapi_shows_the_user_types_model(user_server):
    spec = user_server.http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    data = schemas["ScaleData"]
    assert data["description"] == "Multiply a list of numbers."
    assert data["required"] == ["values"] and data["properties"]["factor"]["exclusiveMinimum"] == 0
    assert data["properties"]["values"]["minItems"] == 1
    job = schemas["Job_scale"]
    assert job["properties"]["data"]["$ref"] == "#/components/schemas/ScaleData"
    body = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "type"
    assert body["discriminator"]["mapping"]["scale"] == "#/components/schemas/Job_scale"
    assert set(body["discriminator"]["mapping"]) == {*jobtypes.BUILTIN, "scale"}


# ------------------------------------------------------------------ poolbench loadtest


def _loadtest(tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poolbench", "loadtest", "--results-dir", str(tmp_path / "results"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--mix", "scale:3,noop:1"], ["--mix", "unknown job type 'scale'", "--jobtypes MODULE"]),
        (["--jobtypes", "usertypes", "--mix", "scael:1"], ["unknown job type 'scael'", "scale", "noop"]),
        (
            ["--jobtypes", "usertypes", "--mix", '[{"type": "scale", "data": {"values": []}}]'],
            ["job type 'scale'", "'values'", "at least 1"],
        ),
        (["--jobtypes", "usertypes_missing", "--mix", "noop"], ["--jobtypes", "'usertypes_missing'"]),
    ],
)
def test_loadtest_checks_its_mix_against_the_registry(tmp_path, args, words):
    (tmp_path / "usertypes.py").write_text(USER_MODULE)
    run = _loadtest(tmp_path, *args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert all(w in run.stderr for w in words), run.stderr
    assert not (tmp_path / "results").exists()  # refused before anything started


def test_a_short_locust_run_sends_the_user_type(tmp_path):
    """One locust process, 2 users for 4 s, a mix of the user's type (with its example
    data) and noop: every request answered as expected, and the service counted the
    user's jobs."""
    (tmp_path / "usertypes.py").write_text(USER_MODULE)
    run = _loadtest(
        tmp_path,
        *("--jobtypes", "usertypes", "--mix", "scale:3,noop:1", "--backend", "thread", "--workers", "2"),
        *("--users", "2", "--spawn-rate", "2", "--duration", "4s", "--user-rate", "20"),
    )
    (out,) = (tmp_path / "results").iterdir()
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(out.glob("*.log")))
    assert run.returncode == 0, run.stdout + run.stderr + logs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["accepted_202"] > 0 and summary["requests"]["failures"] == 0, summary["requests"]
    assert set(summary["jobs"]) == {"succeeded"}, summary["jobs"]
    metrics = (out / "metrics.txt").read_text()
    accepted = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^poolbench_service_jobs_accepted_total\{type="(\w+)"\} (\S+)$', metrics, re.M)
    }
    assert accepted["scale"] > 0 and accepted["noop"] > 0, accepted
    assert sum(accepted.values()) == summary["service"]["pool"]["submitted_total"]  # one job per 202
