"""The cluster host of the "dask" backend: the child process that holds a pool's
own ``LocalCluster`` (a pool created without ``address``).

::

    DaskBackend.start() ──▶ LocalClusterProcess ──Popen──▶ python -c serve_local_cluster(...)
          ▲                     │ reads the scheduler's           │ LocalCluster on 127.0.0.1: one
          │ address             │ address from a pipe of          │ worker of W threads, or W worker
          └─────────────────────┘ its own                         │ processes under nannies
                                                                  │ serves until its stdin closes
    DaskBackend.stop() ──▶ close(): stdin closed (kill=True: SIGKILL first) ──▶ exits

A child process, because a scheduler in the pool's own process would start
distributed's process-wide "Dask-Offload" thread, which never ends, and share the
program's GIL; and a job that crashes the cluster ends the cluster, not the program.
The child runs in its own session (a Ctrl-C meant for the program does not reach it)
and shares the program's stdout and stderr, so what jobs print shows up there.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

from ..exceptions import PoolBroken

__all__ = ["START_TIMEOUT", "LocalClusterProcess", "serve_local_cluster"]

START_TIMEOUT = 60.0  # seconds for the pool's own LocalCluster process to serve


def serve_local_cluster(workers: int, processes: bool, address_fd: int) -> None:
    """Main of the child process that holds a pool's own LocalCluster: write its
    address to ``address_fd``, serve until stdin closes (the pool shut down, or died)."""
    import dask
    from distributed import LocalCluster

    # The pool's Retry rules govern crashed attempts, not Dask's own re-runs.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    layout: dict[str, Any]
    if processes:
        layout = {"n_workers": workers, "threads_per_worker": 1}
    else:
        layout = {"n_workers": 1, "threads_per_worker": workers, "protocol": "tcp"}
    cluster = LocalCluster(
        host="127.0.0.1",
        dashboard_address=None,  # no dashboard; its health/metrics server on a free loopback port:
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        processes=processes,
        **layout,
    )
    try:
        with os.fdopen(address_fd, "w") as out:
            out.write(cluster.scheduler_address + "\n")
        sys.stdin.buffer.read()
    finally:
        try:
            cluster.close(timeout=2)
        finally:
            os._exit(0)  # threads still running abandoned tasks must not hold the exit


class LocalClusterProcess:
    """A LocalCluster on 127.0.0.1 in a child process (``workers`` threads of one
    worker, or ``workers`` worker processes with ``processes``). It ends when its
    stdin closes; its address comes back on a pipe of its own (``address``)."""

    def __init__(self, workers: int, processes: bool, timeout: float = START_TIMEOUT) -> None:
        code = (
            "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
            "from pools.dask._cluster import serve_local_cluster; serve_local_cluster(*json.loads(sys.argv[2]))"
        )
        read_end, write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, json.dumps(sys.path), json.dumps([workers, processes, write_end])],
                stdin=subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the child holds it now: EOF here if it dies
        try:
            self.address = self._read_address(read_end, timeout)
        except BaseException:
            self.close(0, kill=True)
            raise
        finally:
            os.close(read_end)

    def _read_address(self, fd: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise PoolBroken(f"the pool's LocalCluster did not start within {timeout}s")
            chunk = os.read(fd, 4096)
            if not chunk:
                code = self.proc.wait()
                raise PoolBroken(
                    f"the pool's LocalCluster process exited with code {code} before serving (see its output)"
                )
            data += chunk
        return data.decode().strip()

    def close(self, timeout: float = 10.0, *, kill: bool = False) -> None:
        """Close the cluster and reap its process; ``kill`` does not wait for it to
        close gracefully (tasks stuck in its worker threads would hold that up)."""
        if kill:
            self.proc.kill()
        try:
            if self.proc.stdin is not None:  # (a pipe, made in __init__)
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # worker processes of a nanny exit with it
            self.proc.wait()
