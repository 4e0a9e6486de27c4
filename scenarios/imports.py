"""The user's code, by import path: ``"pkg.mod"`` (a module) or ``"pkg.mod:attr"``
(an object in it, ``attr`` may be dotted), the notation of entry points.

The current directory is importable, as with ``python -m``: a ``mypkg/`` or
``jobs.py`` next to where the command runs is found without installing it. Every
failure is a :class:`LoadError` that names the path, what it was for, and the fix;
an exception raised while the module imports is its ``__cause__``::

    make = load_object("mypkg.jobs:resize", what="workload", require=callable, constraint="callable")
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["LoadError", "import_module", "load_object"]

_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class LoadError(ValueError):
    """A module or object named by import path cannot be used: the module is not
    found or fails to import, the attribute is missing, or the object breaks its
    constraint. The message names the path, what it was for, and the fix."""


def _cwd_importable() -> None:
    # `python -m` puts the current directory first on sys.path; a console script
    # (the `poolbench` command) puts its own bin/ there instead.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_module(path: str, *, what: str = "module") -> ModuleType:
    """Import module ``path`` for ``what`` (words for the message: "job-type module")."""
    if not isinstance(path, str) or not _MODULE.match(path):
        raise LoadError(f"{what} {path!r} is not a module path: write it dotted, as in an import (e.g. mypkg.jobs)")
    _cwd_importable()
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name is not None and (path == e.name or path.startswith(e.name + ".")):
            raise LoadError(
                f"{what} {path!r}: no module named {e.name!r} (looked in the current directory "
                f"{os.getcwd()} and sys.path); check the spelling, or install the package that has it"
            ) from None
        raise LoadError(f"{what} {path!r} failed to import: {type(e).__name__}: {e}") from e
    except Exception as e:  # any error of the user's module, reported with its path
        raise LoadError(f"{what} {path!r} failed to import: {type(e).__name__}: {e}") from e


def load_object(
    spec: str,
    *,
    what: str = "object",
    require: Callable[[Any], bool] | None = None,
    constraint: str = "",
) -> Any:
    """The object that ``"pkg.mod:attr"`` names, for ``what``; with ``require``, it
    must pass ``require(obj)``, which ``constraint`` describes ("callable")."""
    module_path, sep, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not _MODULE.match(attr):
        raise LoadError(f"{what} {spec!r} must be 'module:attribute', e.g. mypkg.jobs:resize_image")
    obj: Any = import_module(module_path, what=f"{what} {spec!r}: module")
    for i, name in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            owner = ".".join([module_path, *attr.split(".")[:i]])
            public = sorted(n for n in dir(obj) if not n.startswith("_"))
            shown = ", ".join(public[:12]) + (", ..." if len(public) > 12 else "")
            raise LoadError(
                f"{what} {spec!r}: {owner!r} has no attribute {name!r}; it has: {shown or 'no public names'}"
            ) from None
    if require is not None and not require(obj):
        raise LoadError(f"{what} {spec!r} must be {constraint or 'valid'}, got {type(obj).__name__} {obj!r:.60}")
    return obj
