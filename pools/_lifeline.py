"""A process that ends when another one does: ``exit_with(pid, code)``.

Data flow::

    exit_with(pid) ── starts ──▶ daemon thread "lifeline": poll(pidfd of pid) ──▶ os._exit(code)

Kept apart, with nothing but the standard library, so that a worker process imports
as little as it can.
"""

from __future__ import annotations

import os
import select
import threading
import time

__all__ = ["exit_with"]


def exit_with(pid: int, code: int, *, name: str = "lifeline") -> None:
    """End this process, with exit code ``code``, when process ``pid`` ends, however it
    ends (SIGKILL, SIGTERM, an exit that never stopped this one), so that work does not
    run on unwatched once nobody is left to read its result.

    A daemon thread waits for ``pid`` to end (a pidfd: no polling) and ends this
    process; it needs the GIL for that, so a job inside one long C call that holds the
    GIL ends when that call returns. Not the kernel's parent-death signal: it comes
    when the *thread* that started this process ends, which a process started from a
    short-lived thread would take for a death; and under multiprocessing's
    "forkserver" the parent is the fork server, which outlives the pool. Where pidfds
    are missing, it looks once a second. If ``pid`` has already ended, this process
    ends at once."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(code)
    except (AttributeError, OSError):
        pidfd = None
    threading.Thread(target=_watch, args=(pid, pidfd, code), name=name, daemon=True).start()


def _pidfd_target(fd: int) -> int | None:
    """The pid a pidfd refers to (-1 once that process has ended), or None when ``fd``
    is no pidfd (any more: a job may close descriptors, and the number be reused)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _watch(pid: int, pidfd: int | None, code: int) -> None:
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once the process has ended
        while True:
            poller.poll()
            target = _pidfd_target(pidfd)
            if target == -1:
                os._exit(code)
            if target != pid:
                break  # a job closed it: ask by pid from here on
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(code)
        except PermissionError:  # alive (and not ours to signal)
            pass
        time.sleep(1.0)
