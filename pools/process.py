"""The "process" backend: picklable callables in worker processes, one pipe each.

Data flow::

    submit() ─pickle (fn, args)─▶ Pool heap ─(wake pipe)─▶ manager thread
                                                            │  multiprocessing.connection.wait(
                                                            │    wake pipe, busy workers' pipes,
                                                            │    every worker's sentinel; timeout =
                                                            │    the nearest job deadline)
                       ┌──── send_bytes(job) ───────────────┤
                       ▼                                    │
             worker process 1..W  ── send_bytes(result) ───▶│ _finish_attempt()
                       ▲                                    │
                       └── SIGKILL + replace ◀── deadline passed / job cancelled / worker died

Each worker has its own pipe and runs one job at a time, so the manager always
knows which job a worker holds: killing a worker (timeout, cancel) or losing one
(segfault, ``os._exit``, the OOM killer) fails exactly that job, and a fresh
worker takes its place. There is no queue shared between processes to corrupt,
which is why ``ProcessPoolExecutor`` breaks as a whole on a crash and this
pool does not.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from typing import Any, Callable

from . import _base
from ._base import CRASH, ERROR, OK, Job, Pool
from ._process_worker import EXIT_MEMORY_ERROR, READY, worker_main
from .exceptions import InvalidArgument, InvalidCallable, RemoteTraceback, WorkerCrashed

__all__ = ["ProcessPool"]

_STOP = b""

_SIGNAL_CAUSES = {
    signal.SIGKILL: "killed by SIGKILL: most often the kernel's out-of-memory killer (see dmesg), "
    "or another process",
    signal.SIGSEGV: "a segmentation fault: a bug in native code (a C extension, ctypes)",
    signal.SIGABRT: "an abort in native code (a failed assertion in a C library)",
    signal.SIGBUS: "a bus error in native code (a truncated memory-mapped file, say)",
    signal.SIGFPE: "a floating-point exception in native code",
    signal.SIGTERM: "terminated by SIGTERM from another process",
}


def describe_exit(exitcode: int | None) -> tuple[str | None, str]:
    """(signal name, likely cause) of a worker's exit code."""
    if exitcode is None:
        return None, "the worker process vanished without an exit status"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return None, f"killed by signal {-exitcode}"
        return sig.name, _SIGNAL_CAUSES.get(sig, f"killed by {sig.name}")
    if exitcode == EXIT_MEMORY_ERROR:
        return None, "MemoryError in the job: the worker ran out of memory"
    return None, (
        f"the worker exited with code {exitcode}: the job (or a native library it called) "
        "ended the process, e.g. with os._exit()"
    )


def _default_start_method() -> str:
    # forkserver: workers fork from a small clean server process, not from this
    # (multi-threaded) one, so a lock held by another thread cannot be inherited.
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class _Worker:
    __slots__ = ("process", "conn", "job", "attempt", "deadline", "ready")

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Any) -> None:
        self.process = process
        self.conn = conn
        self.job: Job | None = None
        self.attempt = 0
        self.deadline: float | None = None
        self.ready = False  # until its READY message: a job's clock must not run during start-up


#: consecutive workers that die before they are ready: the pool cannot start workers
START_FAILURES_LIMIT = 5


class ProcessPool(Pool):
    """Worker processes; ``start_method`` is "forkserver" (default on Linux),
    "spawn" or "fork". Jobs and results cross by pickle."""

    backend = "process"
    runs = "callables"
    stops_running_jobs = True
    survives_crashes = True
    carries_contextvars = False

    def __init__(
        self,
        *,
        workers: int | None = None,
        queue_size: int = 1000,
        overflow: str = "block",
        name: str | None = None,
        start_method: str | None = None,
    ) -> None:
        super().__init__(workers=workers, queue_size=queue_size, overflow=overflow, name=name)
        method = start_method or _default_start_method()
        if method not in multiprocessing.get_all_start_methods():
            raise InvalidArgument(
                f"start_method must be one of {multiprocessing.get_all_start_methods()}, got {method!r}"
            )
        self.start_method = method
        self._mp = multiprocessing.get_context(method)

    # ------------------------------------------------------------------ hooks

    def _prepare(self, fn: Callable[..., Any], args: tuple) -> bytes:
        _base.check_plain_callable(self.backend, fn)
        try:
            return pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise InvalidCallable(
                f"the 'process' backend sends each job to a worker process by pickle, and "
                f"{fn!r} with its arguments cannot be pickled ({err}): use a function defined at "
                "the top level of a module (not a lambda or a nested function) and picklable arguments"
            ) from err

    def _start_workers(self) -> None:
        if self.start_method == "forkserver":
            # Import the worker loop once in the server, not in every new worker.
            self._mp.set_forkserver_preload(["__main__", "pools._process_worker"])
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._wake_pending = False
        self._pipe_closed = False
        self._start_failures = 0
        self._stopping = False
        self._workers: list[_Worker] = [self._spawn() for _ in range(self.workers)]
        self._manager = threading.Thread(target=self._manage, name=f"{self.name}-manager", daemon=True)
        self._manager.start()

    def _on_enqueued_locked(self) -> None:
        if not self._wake_pending and not self._pipe_closed:
            self._wake_pending = True
            os.write(self._wake_w, b"\0")

    def _wake(self) -> None:
        with self._lock:
            self._on_enqueued_locked()

    def _stop_running(self, job: Job, attempt: int) -> None:
        self._wake()  # the manager sees the job settled and kills its worker

    # ------------------------------------------------------------------ manager

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        process = self._mp.Process(target=worker_main, args=(child_conn,), name=f"{self.name}-worker", daemon=True)
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _manage(self) -> None:
        try:
            self._manage_loop()
        except BaseException as exc:  # noqa: BLE001 - no worker can be had: fail the jobs, loudly
            self._break(exc)
            raise

    def _manage_loop(self) -> None:
        wait = multiprocessing.connection.wait
        while True:
            busy = [w for w in self._workers if w.job is not None]
            deadlines = [w.deadline for w in busy if w.deadline is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            waitables: list[Any] = [self._wake_r]
            live = [w for w in self._workers if w.conn is not None]  # not the _Dead stand-ins
            waitables += [w.conn for w in live if w.job is not None or not w.ready]
            waitables += [w.process.sentinel for w in live]
            ready = set(wait(waitables, timeout))
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                with self._lock:
                    self._wake_pending = False
            for i, w in enumerate(self._workers):
                if w.conn in ready and not w.ready:
                    self._hello(w)
                elif w.job is not None and w.conn in ready:
                    self._receive(w)
                if w.process.sentinel in ready:
                    self._replace(i, died=True)
            self._enforce()
            if self._stopping:
                return
            self._dispatch()

    def _hello(self, w: _Worker) -> None:
        try:
            w.ready = w.conn.recv_bytes() == READY
        except (EOFError, OSError):
            return  # died while starting: its sentinel reports it
        self._start_failures = 0

    def _receive(self, w: _Worker) -> None:
        try:
            data = w.conn.recv_bytes()
        except (EOFError, OSError):
            return  # it died mid-message: its sentinel reports the crash
        job, attempt = w.job, w.attempt
        w.job = None
        w.deadline = None
        try:
            _, _, ok, value, tb = pickle.loads(data)
        except Exception as err:  # noqa: BLE001 - a result this process cannot rebuild fails its job only
            exc = pickle.UnpicklingError(f"job {job.job_id} returned a result that cannot be unpickled here: {err!r}")
            exc.__cause__ = err
            self._finish_attempt(job, attempt, ERROR, exc)
            return
        if ok:
            self._finish_attempt(job, attempt, OK, value)
            return
        try:
            exc = pickle.loads(value)
        except Exception as err:  # noqa: BLE001
            exc = RuntimeError(f"job {job.job_id} failed, and its exception could not be rebuilt here: {err!r}")
        exc.__cause__ = RemoteTraceback(tb)
        self._finish_attempt(job, attempt, ERROR, exc)

    def _replace(self, i: int, *, died: bool) -> None:
        """Reap worker ``i`` (killing it unless it died) and put a new one in its place."""
        w = self._workers[i]
        self._workers[i] = _Worker(_Dead(), None)  # until the new one exists
        if not died:
            w.process.kill()
        w.process.join()
        w.conn.close()
        job, attempt = w.job, w.attempt
        if died and job is not None:
            exitcode = w.process.exitcode
            sig, cause = describe_exit(exitcode)
            err = WorkerCrashed(
                f"worker process {w.process.pid} died running job {job.job_id} "
                f"(attempt {attempt}): {cause} (exit code {exitcode})",
                job_id=job.job_id,
                exitcode=exitcode,
                signal_name=sig,
                cause=cause,
            )
            self._finish_attempt(job, attempt, CRASH, err)
        if died and not w.ready:
            self._start_failures += 1
            if self._start_failures >= START_FAILURES_LIMIT:
                sig, cause = describe_exit(w.process.exitcode)
                raise RuntimeError(
                    f"{self._start_failures} worker processes in a row died before they could take a "
                    f"job (last exit code {w.process.exitcode}: {cause}); is the start method "
                    f"{self.start_method!r} usable here, and does the main module import cleanly?"
                )
        w.process.close()
        if not self._stopping:  # no replacement while stopping
            self._workers[i] = self._spawn()

    def _enforce(self) -> None:
        """Kill the workers whose job was cancelled or ran past its deadline."""
        now = time.monotonic()
        for i, w in enumerate(self._workers):
            job = w.job
            if job is None:
                continue
            if job._status is not _base.RUNNING or job.attempt != w.attempt:
                self._replace(i, died=False)  # settled elsewhere (cancel)
            elif w.deadline is not None and now >= w.deadline:
                w.job = None
                self._replace(i, died=False)
                self._settle_timeout(job, w.attempt, preempted=False)

    def _dispatch(self) -> None:
        for w in self._workers:
            if w.job is not None or not w.ready:
                continue
            with self._lock:
                job = self._take_locked()
            if job is None:
                return
            w.job, w.attempt = job, job.attempt
            w.deadline = None if job.timeout is None else job._started_at + job.timeout
            msg = pickle.dumps((job.job_id, job.attempt, job.timeout, job._payload), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                w.conn.send_bytes(msg)
            except OSError:
                pass  # the worker died: its sentinel reports the crash on the next round

    def _stop_workers(self, deadline: float | None) -> int:
        with self._lock:
            self._stopping = True
            self._on_enqueued_locked()
        grace = 5.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if self._manager is not threading.current_thread():
            self._manager.join(grace + 5.0)
        for w in self._workers:
            if isinstance(w.process, _Dead):
                continue
            try:
                w.conn.send_bytes(_STOP)
            except OSError:
                pass
        for w in self._workers:
            if isinstance(w.process, _Dead):
                continue
            w.process.join(max(0.0, grace) if deadline is not None else 5.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
            w.process.close()
        with self._lock:
            self._pipe_closed = True
        os.close(self._wake_r)
        os.close(self._wake_w)
        return 0


class _Dead:
    """Stands in for a worker being replaced, or not replaced because the pool is stopping."""

    sentinel = -1
    pid = None
    exitcode = None

    def is_alive(self) -> bool:
        return False
