"""Which of the pool's modules run compiled, and the switch to run them pure.

The hot path (``HOT``) is compiled with Cython from these very ``.py`` files when
poolbench is installed (``setup.py``): each builds to an extension module beside its
source, which Python would import in preference to the source. This module (never
compiled itself) puts a finder first on ``sys.meta_path`` that imports the pure
source instead when ``POOLBENCH_PURE_PYTHON=1`` is set, or when the source is newer
than its compiled module (edited since the last build: the compiled one is stale).
``compiled_modules()`` says which are in use.

The compiled modules keep Python's semantics exactly, the GIL included: where the
pure code relies on the GIL for an unlocked read (the gauges ``pool.queued``,
``pool.busy``; a worker's check of a condition's waiters), the comment there says so,
for a free-threaded port (3.13t and later) to put a lock.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: the modules compiled from their own source, in dependency order
HOT = (
    "_types",
    "_context",
    "_callbacks",
    "_timer",
    "_future",
    "_job",
    "_backend",
    "_core",
    "thread",
    "aio",
    "remote",
    "process",
    "_process_worker",
)

PURE_ENV = "POOLBENCH_PURE_PYTHON"
_HERE = os.path.dirname(os.path.abspath(__file__))


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def _compiled_path(name: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(_HERE, name + suffix)
        if os.path.exists(path):
            return path
    return None


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports ``pools.<hot module>`` from its source when pure Python is asked for,
    or when its compiled module is missing or older than the source."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in HOT:
            return None
        source = os.path.join(_HERE, name + ".py")
        compiled = _compiled_path(name)
        if compiled is not None and not pure_requested() and os.path.getmtime(compiled) >= os.path.getmtime(source):
            return None  # the usual import: the compiled module
        return importlib.util.spec_from_file_location(fullname, source)


def install() -> None:
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())


def compiled_modules() -> tuple[str, ...]:
    """The hot modules imported so far that run compiled (empty: all pure)."""
    out = []
    for name in HOT:
        module = sys.modules.get(f"{__package__}.{name}")
        origin = getattr(getattr(module, "__spec__", None), "origin", "") or ""
        if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            out.append(name)
    return tuple(out)


install()  # on import: pools/__init__ imports this module before any hot one
