"""Build the optional Cython wheel; if it cannot be built, install the pure one alone."""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed compile warns instead of failing the install: the pure wheel is the fallback."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, no Cython
            self._warn(exc)

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)  # type: ignore[arg-type]
        except Exception as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        print(f"chronowheel: native wheel not built ({exc}); using the pure-Python wheel", file=sys.stderr)


def _extension(extension: type, source: str) -> object:
    """Each ``native/<name>.pyx`` is its own module, ``chronowheel.<name>``."""
    name = os.path.splitext(os.path.basename(source))[0]
    # Rebuilt when one changes; in the sdist. The .pxd holds inline code each module compiles for itself.
    headers = sorted(glob.glob(os.path.join("native", "*.h")) + glob.glob(os.path.join("native", "*.pxd")))
    return extension(f"chronowheel.{name}", [source], depends=headers, extra_compile_args=["-O3"])


def extensions() -> list[object]:
    if os.environ.get("CHRONOWHEEL_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("chronowheel: Cython missing; using the pure-Python wheel", file=sys.stderr)
        return []
    from setuptools import Extension

    built: list[object] = []
    for source in sorted(glob.glob(os.path.join("native", "*.pyx"))):
        try:  # one module at a time: a Cython error in one costs that module alone, the rest still build
            built += cythonize(
                [_extension(Extension, source)],
                compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
                include_path=["native"],
            )
        except Exception as exc:  # a Cython error must not cost users the install
            print(f"chronowheel: cannot cythonize {source} ({exc}); its pure-Python twin is used", file=sys.stderr)
    return built


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
