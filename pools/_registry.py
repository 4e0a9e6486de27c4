"""Backend names → the modules that implement them, imported on first use.

A backend whose optional dependency is missing stays listed in the registry, is
left out of ``available_backends()``, and ``create_pool`` names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from ._backend import Backend
from ._types import Capabilities
from .exceptions import BackendUnavailable, InvalidArgument, UnknownBackend

__all__ = ["available_backends", "backend_class", "register_backend", "registered_backends"]


@dataclass(frozen=True)
class _Entry:
    name: str
    target: str | type[Backend]  # "module:Class", imported on first use, or the class
    requires: tuple[str, ...] = ()  # top-level modules that must be importable
    extra: str | None = None  # the pip extra that brings them


_REGISTRY: dict[str, _Entry] = {}


def register_backend(
    name: str,
    target: str | type[Backend],
    *,
    requires: tuple[str, ...] = (),
    extra: str | None = None,
) -> None:
    """Register a backend: ``target`` is a ``pools.lowlevel.Backend`` subclass, or
    ``"package.module:BackendClass"`` (imported on first use). ``requires`` names the
    top-level modules it needs, ``extra`` the pip extra that brings them."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"backend name must be a non-empty str, got {name!r}")
    if isinstance(target, str):
        if target.count(":") != 1:
            raise InvalidArgument(f"backend target must look like 'package.module:BackendClass', got {target!r}")
    elif not (isinstance(target, type) and issubclass(target, Backend)):
        raise InvalidArgument(f"backend target must be a pools.lowlevel.Backend subclass or its path, got {target!r}")
    elif not isinstance(getattr(target, "capabilities", None), Capabilities):
        raise InvalidArgument(
            f"backend {name!r} ({target.__qualname__}) declares no capabilities: give the class a "
            "'capabilities = pools.lowlevel.Capabilities(...)' attribute"
        )
    _REGISTRY[name] = _Entry(name, target, tuple(requires), extra)


register_backend("thread", "pools.thread:ThreadBackend")
register_backend("process", "pools.process:ProcessBackend")
register_backend("asyncio", "pools.aio:AsyncioBackend")
register_backend("dask", "pools.dask:DaskBackend", requires=("distributed",), extra="dask")


def registered_backends() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def _missing(entry: _Entry) -> list[str]:
    return [mod for mod in entry.requires if importlib.util.find_spec(mod) is None]


def available_backends() -> tuple[str, ...]:
    """The backends usable on this machine, in registration order."""
    return tuple(name for name, entry in _REGISTRY.items() if not _missing(entry))


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name``."""
    entry = _REGISTRY.get(name)
    if entry is None:
        valid = ", ".join(repr(n) for n in _REGISTRY)
        raise UnknownBackend(f"unknown backend {name!r}; valid backends are: {valid}")
    missing = _missing(entry)
    if missing:
        extra = f"pip install 'poolbench[{entry.extra}]'" if entry.extra else f"pip install {' '.join(missing)}"
        raise BackendUnavailable(
            f"backend {name!r} is not available: {', '.join(missing)} not installed. Install it with: {extra}"
        )
    if not isinstance(entry.target, str):
        return entry.target
    module, _, attr = entry.target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise InvalidArgument(f"backend {name!r}: {entry.target} is {cls!r}, not a pools.lowlevel.Backend subclass")
    return cls
