"""The fork server's preload list, added to rather than replaced."""

from __future__ import annotations

import threading

_lock = threading.Lock()  # two pools starting at once: neither loses the other's module


def add_forkserver_preload(*modules: str) -> None:
    """Have the fork server (the "forkserver" start method of ``multiprocessing``)
    import ``modules`` once, before it forks any worker, besides the modules already
    asked for. ``multiprocessing.set_forkserver_preload`` replaces one process-wide
    list, which the program or another library may have set; this keeps it, an
    explicit empty list included. The server reads the list when it starts: call
    this before the first process pool of the program. Where there is no fork server
    (Windows, macOS without it), nothing to do."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    # No public getter: the list lives on the process-wide server object (3.11-3.13 alike).
    server = forkserver._forkserver
    with _lock:
        asked = list(getattr(server, "_preload_modules", ["__main__"]))
        missing = [name for name in modules if name not in asked]
        if missing:
            server.set_forkserver_preload([*asked, *missing])
