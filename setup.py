"""Builds poolbench: the pool's hot path compiled with Cython where it can be.

The modules in ``pools/_compiled.py``'s ``HOT`` are compiled from their own Python
source (Cython's pure-Python mode: one source of truth, no .pyx twin). When Cython or
a C compiler is missing, or a module fails to build, the install goes on with the
pure-Python modules and says so in one line. ``POOLBENCH_PURE_PYTHON=1`` at build time
builds nothing; at run time it makes ``import pools`` use the pure modules.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pools"))
from _compiled import HOT

PURE = os.environ.get("POOLBENCH_PURE_PYTHON", "") not in ("", "0")
# pip builds one module at a time unless told otherwise; every core shortens the install.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _note(why: str) -> None:
    print(f"poolbench: installing the pure-Python pools ({why}); they work the same, more slowly", file=sys.stderr)


def _extensions() -> list:
    if PURE:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as err:
        _note(f"Cython is not available: {err}")
        return []
    sources = [f"pools/{name}.py" for name in HOT]
    options = {
        "language_level": 3,
        "quiet": True,
        "compiler_directives": {
            "binding": True,  # functions keep their introspection (signature, __wrapped__)
            "annotation_typing": False,  # annotations are for the type checker, never run-time checks
            "embedsignature": True,
        },
    }
    # Translated by several processes where they fork (Linux): where they would be
    # spawned, each would run this script again.
    nthreads = CORES if CORES > 1 and sys.platform.startswith("linux") else 0
    try:
        try:
            return cythonize(sources, nthreads=nthreads, **options)
        except (OSError, ImportError):  # no process pool here (a sandbox): one at a time
            return cythonize(sources, **options)
    except Exception as err:  # noqa: BLE001 - any failure falls back to pure Python
        _note(f"Cython could not translate the sources: {err}")
        return []


class OptionalBuildExt(build_ext):
    """A module that fails to compile (no compiler, no Python headers) is left pure."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel and CORES > 1:
            self.parallel = CORES

    def run(self) -> None:
        try:
            super().run()
        except Exception as err:  # noqa: BLE001
            _note(f"the C build failed: {err}")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001
            _note(f"{ext.name} did not compile: {err}")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
