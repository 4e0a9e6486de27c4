"""A process that ends when another one does: ``exit_with(pid, code)``.

Data flow::

    exit_with(pid) ── starts ──▶ daemon thread "lifeline": poll(pidfd of pid) ──▶ os._exit(code)
                                                                          (or SIGKILL to its group)

Kept apart, with nothing but the standard library, so that a worker process imports
as little as it can.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from typing import NoReturn

__all__ = ["exit_with", "process_alive"]


def exit_with(pid: int, code: int, *, name: str = "lifeline", group: bool = False) -> None:
    """End this process, with exit code ``code``, when process ``pid`` ends, however it
    ends (SIGKILL, SIGTERM, an exit that never stopped this one), so that work does not
    run on unwatched once nobody is left to read its result. ``group``: where this
    process leads its process group (a session of its own), end the whole group
    instead (SIGKILL), its children with it — those that watch nothing themselves.

    A daemon thread waits for ``pid`` to end (a pidfd: no polling) and ends this
    process; it needs the GIL for that, so a job inside one long C call that holds the
    GIL ends when that call returns. Not the kernel's parent-death signal: it comes
    when the *thread* that started this process ends, which a process started from a
    short-lived thread would take for a death; and under multiprocessing's
    "forkserver" the parent is the fork server, which lives as long as any of its
    children holds its alive pipe, as a running worker does. Where pidfds are missing,
    it looks once a second. If ``pid`` has already ended, this process ends at once."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        _end(code, group)
    except (AttributeError, OSError):
        pidfd = None
    threading.Thread(target=_watch, args=(pid, pidfd, code, group), name=name, daemon=True).start()


def _end(code: int, group: bool) -> NoReturn:
    if group and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)  # this process too: nobody reads its code
    os._exit(code)


def _pidfd_target(fd: int) -> int | None:
    """The pid a pidfd refers to (-1 once that process has been reaped), or None when
    ``fd`` is no pidfd (any more: a job may close descriptors, and the number be reused)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _watch(pid: int, pidfd: int | None, code: int, group: bool) -> None:
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once the process has ended
        poller.poll()
        # Readable: it ended, whether or not it was reaped yet (a zombie keeps its pid
        # in fdinfo until then; an orphan's may never be reaped where nothing does that).
        # Unless a job closed the descriptor and its number now stands for something
        # else: then ask by pid from here on.
        if _pidfd_target(pidfd) in (-1, pid):
            _end(code, group)
    while process_alive(pid):
        time.sleep(1.0)
    _end(code, group)


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists and has not ended (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive (and not ours to signal)
            return True
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")
