"""Race mode's hook (``pools.testing.race``): who is told when it changes.

The pool's core keeps the hook in a plain module global of its own, read at each
hand-off point (``pools/_core.py`` is compiled by Cython: a global lookup and a
comparison with None, nothing more, when race mode is off). This module holds the
current hook and pushes every change to the modules that keep such a copy, so that
``pools.lowlevel`` can offer ``set_race_hook`` and ``race_point`` without importing
the core.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Hook", "race_point", "register", "set_race_hook"]

Hook = Callable[[str], None]

_hook: Hook | None = None
_sinks: list[Callable[[Hook | None], None]] = []


def register(sink: Callable[[Hook | None], None]) -> None:
    """``sink(hook)`` is called now and whenever the hook changes."""
    _sinks.append(sink)
    sink(_hook)


def set_race_hook(hook: Hook | None) -> Hook | None:
    """Install ``hook`` at the pools' hand-off points (None: remove it); returns the
    previous one. ``pools.testing.race`` installs a hostile one.

    The hook is called with the point's name, on whichever thread reaches it, and at
    some points (``"take"``) with the pool's lock held: it may sleep, yield or record,
    but must not call into a pool (``stats()``, ``submit``, ``running_jobs()``), which
    would wait for that lock for ever."""
    global _hook
    previous, _hook = _hook, hook
    for sink in _sinks:
        sink(hook)
    return previous


def race_point(point: str) -> None:
    """A hand-off point of a backend's own (``pools.lowlevel.race_point``): race mode
    may yield or pause here. Off, it returns at once."""
    if _hook is not None:
        _hook(point)
