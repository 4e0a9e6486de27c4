"""Backend names → the modules that implement them, imported on first use.

A backend whose optional dependency is missing stays listed in the registry, is
left out of ``available_backends()``, and ``create_pool`` names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .exceptions import BackendUnavailable, UnknownBackend

__all__ = ["available_backends", "backend_class", "create_pool", "register_backend", "registered_backends"]


@dataclass(frozen=True)
class _Entry:
    name: str
    target: str | Callable[..., Any]  # "module:Class", or a factory
    requires: tuple[str, ...] = ()  # top-level modules that must be importable
    extra: str | None = None  # the pip extra that brings them


_REGISTRY: dict[str, _Entry] = {}


def register_backend(
    name: str,
    target: str | Callable[..., Any],
    *,
    requires: tuple[str, ...] = (),
    extra: str | None = None,
) -> None:
    """Register a backend: ``target`` is ``"package.module:PoolClass"`` (imported
    lazily) or a callable that takes the pool options and returns a Pool."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"backend name must be a non-empty str, got {name!r}")
    _REGISTRY[name] = _Entry(name, target, tuple(requires), extra)


register_backend("thread", "pools.thread:ThreadPool")
register_backend("process", "pools.process:ProcessPool")
register_backend("asyncio", "pools.aio:AsyncioPool")
register_backend("dask", "pools.dask:DaskPool", requires=("distributed",), extra="dask")


def registered_backends() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def _missing(entry: _Entry) -> list[str]:
    return [mod for mod in entry.requires if importlib.util.find_spec(mod) is None]


def available_backends() -> tuple[str, ...]:
    """The backends usable on this machine, in registration order."""
    return tuple(name for name, entry in _REGISTRY.items() if not _missing(entry))


def backend_class(name: str) -> Callable[..., Any]:
    """The pool class (or factory) registered as ``name``."""
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
    if callable(entry.target):
        return entry.target
    module, _, attr = entry.target.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_pool(backend: str = "thread", **options: Any):
    """Make a pool of the named backend; options are keyword-only: ``workers``,
    ``queue_size`` (default 1000), ``overflow`` ("block" or "reject"), ``name``,
    and the backend's own (see its class)."""
    if not isinstance(backend, str):
        raise UnknownBackend(f"backend must be a name (str), got {backend!r}; valid: {registered_backends()}")
    return backend_class(backend)(**options)
