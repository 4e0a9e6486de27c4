"""A leak checker in the spirit of Go's goleak: after the code under check, no new
thread, process, asyncio task or open pool may be left.

Waiting is event-driven: threads are joined, processes are watched through a
pidfd (Linux) so their exit wakes the checker, each until one shared deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._core import live_pools
from .._lifeline import process_alive
from ..exceptions import Leaked

__all__ = ["Snapshot", "check_leaks", "find_leaks", "no_leaks", "process_alive", "snapshot", "wait_process_gone"]


@dataclass(frozen=True)
class Snapshot:
    """What existed before the code under check ran."""

    threads: frozenset[threading.Thread]
    processes: frozenset[int]
    tasks: frozenset[asyncio.Task[Any]]
    pools: frozenset[int]


def _helper_pids() -> set[int]:
    """multiprocessing's own long-lived helpers: the fork server and the resource
    tracker are shared by every pool of the program, not leaks of one."""
    pids = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
        if pid:
            pids.add(pid)
        pid = getattr(resource_tracker._resource_tracker, "_pid", None)
        if pid:
            pids.add(pid)
    except (ImportError, AttributeError):
        pass
    return pids


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        table[int(entry)] = (int(rest[1]), rest[0])
    return table


def descendants(pid: int | None = None) -> set[int]:
    """The live processes below process ``pid`` (this one by default), grandchildren
    too: forkserver workers are children of the fork server. Below this process,
    multiprocessing's own helpers (the fork server, the resource tracker: shared by
    every pool of the program) are left out; below another, they count."""
    root = os.getpid() if pid is None else pid
    if not os.path.isdir("/proc"):
        if root != os.getpid():
            raise OSError("descendants of another process need /proc (Linux)")
        return {p.pid for p in multiprocessing.active_children() if p.pid}
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for child, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(child)
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if table[child][1] not in ("Z", "X"):  # zombies have ended
                found.add(child)
            stack.append(child)
    return found - _helper_pids() if root == os.getpid() else found


def _tasks() -> frozenset[asyncio.Task[Any]]:
    try:
        return frozenset(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        return frozenset()


def snapshot() -> Snapshot:
    multiprocessing.active_children()  # reap finished children first
    return Snapshot(
        frozenset(threading.enumerate()),
        frozenset(descendants()),
        _tasks(),
        frozenset(id(p) for p in live_pools()),
    )


def wait_process_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for process ``pid`` (any process, not only a
    child) to end, woken by its pidfd rather than by polling; True if it ended."""
    if not process_alive(pid):
        return True
    if timeout > 0:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux, or already gone
            return not process_alive(pid)
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
    return not process_alive(pid)


def find_leaks(before: Snapshot, *, timeout: float = 10.0) -> list[str]:
    """Wait up to ``timeout`` seconds for what was started since ``before`` to end;
    return a description of each thing still there. Once a pool was left open, nothing
    is waited for: its workers live as long as it does, so the check fails anyway, and
    waiting would only delay the report by ``timeout`` (what is still there is listed)."""
    leaks = []
    for pool in live_pools():
        if id(pool) not in before.pools:
            leaks.append(f"pool {pool!r} was started and never shut down")
    deadline = time.monotonic() + (0.0 if leaks else timeout)
    for thread in threading.enumerate():
        if thread not in before.threads and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                leaks.append(f"thread {thread.name!r} (daemon={thread.daemon}) is still running")
    for pid in descendants() - before.processes:
        wait_process_gone(pid, deadline - time.monotonic())
    multiprocessing.active_children()
    for pid in sorted(descendants() - before.processes):
        leaks.append(f"process {pid} ({_cmdline(pid)}) is still running")
    current = asyncio.current_task() if _tasks() else None
    for task in _tasks() - before.tasks - {current}:
        if not task.done():
            leaks.append(f"asyncio task {task.get_name()!r} ({task.get_coro()!r}) is still pending")
    return leaks


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def check_leaks(before: Snapshot, *, timeout: float = 10.0) -> None:
    """Raise :class:`~pools.Leaked` if anything started since ``before`` is still
    there after :func:`find_leaks`'s wait of up to ``timeout`` seconds."""
    leaks = find_leaks(before, timeout=timeout)
    if leaks:
        raise Leaked(
            f"{len(leaks)} leak(s): "
            + "; ".join(leaks)
            + ". Shut every pool down (use 'with pool:'), and make thread jobs watch "
            "pools.current_context() so that a cancelled or timed-out job can end.",
            leaks=tuple(leaks),
        )


@contextlib.contextmanager
def no_leaks(*, timeout: float = 10.0) -> Iterator[Snapshot]:
    """``with no_leaks(): ...`` raises :class:`~pools.Leaked` if the block leaves a
    thread, process, task or pool behind (it waits up to ``timeout`` for them)."""
    before = snapshot()
    yield before
    check_leaks(before, timeout=timeout)  # not reached if the block raised
