"""The ``poolbench`` command table: every subcommand listed without importing it, and
one that cannot run here is an error naming it and the fix, never a missing entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from poolbench import cli

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_the_list_of_commands_imports_none_of_them():
    code = (
        "import sys\n"
        "from poolbench import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = ('scenarios', 'reports', 'loadtests', 'fastapi', 'uvicorn', 'locust', 'pandas', 'matplotlib', 'rich')\n"
        "print('imported:', sorted(m for m in sys.modules if m.partition('.')[0] in heavy or 'commands.' in m))\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert "imported: []" in out.stdout, out.stdout
    for name, command in cli.COMMANDS.items():
        assert f"  {name}" in out.stdout and command.summary in out.stdout, name


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_builds_its_parser(name):
    assert cli.command_parser(name).format_help().startswith(f"usage: poolbench {name} ")


def test_python_m_runs_the_same_commands():
    for args in (["-m", "poolbench", "serve", "--help"], ["-m", "poolbench.service", "--help"]):
        out = _run(*args)
        assert out.returncode == 0 and out.stdout.startswith("usage: poolbench serve "), out.stdout + out.stderr
    out = _run("-m", "poolbench", "nope")
    assert out.returncode == 2 and "invalid choice: 'nope'" in out.stderr


def test_a_command_whose_extra_is_missing_says_which_extra():
    # -S: no site-packages, so no third-party module at all; the standard library and
    # poolbench's own packages (on PYTHONPATH) remain, as after `pip install poolbench`.
    env = {"PYTHONPATH": str(ROOT)}
    out = _run("-S", "-m", "poolbench", "serve", "--port", "0", env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == (
        "poolbench serve is not available: fastapi, uvicorn, uvloop, httptools, prometheus_client not installed. "
        "Install it with: pip install 'poolbench[service]'"
    )
    listing = _run("-S", "-m", "poolbench", "--help", env=env).stdout
    assert "loadtest    load-test the HTTP service" in listing  # still listed, with what it needs
    assert "(needs: pip install 'poolbench[service,loadtest]')" in listing


@pytest.mark.parametrize(
    ("imports", "fix"),
    [
        ("import surely_not_installed_mod", "Install what it needs with: pip install 'poolbench[fake]'"),
        ("import scenarios.surely_absent", "poolbench's own files are missing or broken: reinstall it"),
    ],
)
def test_a_command_that_fails_to_import_is_an_error_naming_it(tmp_path, monkeypatch, capsys, imports, fix):
    (tmp_path / "broken_command.py").write_text(imports + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.EXTRAS, "fake", ("json",))  # installed: the import itself must fail
    monkeypatch.setitem(cli.COMMANDS, "broken", cli.Command("broken_command", "a command that fails", ("fake",)))

    assert cli.main(["broken", "--anything"]) == 2
    err = capsys.readouterr().err
    missing = imports.split()[-1]
    assert err.startswith(
        f"poolbench broken is not available: importing broken_command failed: No module named '{missing}'"
    )
    assert fix in err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    assert "  broken      a command that fails" in capsys.readouterr().out  # never silently dropped
