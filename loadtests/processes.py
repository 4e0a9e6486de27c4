"""The load test's child processes: each one's exit awaited with a deadline, its CPU
time sampled while it runs (``/proc``) and read from its rusage at the end (``wait4``)."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["STOP_TIMEOUT", "Child", "free_port", "watch"]

STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Child:
    """A child process whose exit we await with a deadline and whose CPU time we
    read from its rusage (``wait4``)."""

    def __init__(self, role: str, cmd: list[str], log: Path, env: dict[str, str], stdout: Any = None) -> None:
        self.role = role
        self.log = log
        self._log = open(log, "w")  # noqa: SIM115 - open for the child's life, closed in wait()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=stdout or self._log, stderr=self._log, stdin=subprocess.DEVNULL, env=env
        )
        self.cpu: float | None = None
        self.wall: float | None = None
        self.peak: float | None = None  # busiest few seconds, in cores (see watch)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it did not end within ``timeout``."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            fd = os.pidfd_open(self.proc.pid)
        except OSError:
            return self.proc.wait(timeout)
        try:
            if not select.select([fd], [], [], max(0.0, timeout))[0]:
                return None
        finally:
            os.close(fd)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime
        self.wall = time.monotonic() - self.started
        self._log.close()
        return self.proc.returncode

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> int:
        # os.kill, not Popen.send_signal: its poll() would reap the child and lose its rusage.
        rc = self.wait(0)
        if rc is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            rc = self.wait(timeout)
        if rc is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            rc = self.wait(10.0)
        return rc if rc is not None else -signal.SIGKILL

    def cpu_fraction(self) -> float | None:
        return None if self.cpu is None or not self.wall else round(self.cpu / self.wall, 3)


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def watch(children: list[Child], service: Child, timeout: float, window: int = 3) -> dict[str, float]:
    """Wait for the first child (locust, or its master) to end, sampling every
    process's CPU time each second; return each one's busiest ``window``-second
    average, in cores. Averages over the whole run would hide a saturated load
    generator behind its start-up and wind-down."""
    procs = {c.role: c.proc.pid for c in children} | {"service": service.proc.pid}
    samples: list[tuple[float, dict[str, float | None]]] = []
    deadline = time.monotonic() + timeout
    while children[0].wait(1.0) is None:
        sample = {role: _cpu_seconds(pid) for role, pid in procs.items()}
        sample["machine"] = _machine_busy_seconds()
        samples.append((time.monotonic(), sample))
        if time.monotonic() > deadline:
            print("poolbench loadtest: locust overran its time; stopping it", file=sys.stderr)
            break
    peaks: dict[str, float] = {}
    for (t0, a), (t1, b) in zip(samples, samples[window:], strict=False):
        for role in [*procs, "machine"]:
            before, after = a.get(role), b.get(role)
            if before is not None and after is not None:
                peaks[role] = max(peaks.get(role, 0.0), round((after - before) / (t1 - t0), 3))
    return peaks
