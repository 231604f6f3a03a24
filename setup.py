"""Build the C extensions: the normalizer core ``normalize._fastcore`` and the fanout's
direct write path ``fanout._fastwrite``.

All project metadata lives in pyproject.toml; this file only declares the extension, because
setuptools takes C extensions from ``setup.py``. ``pip install -e .`` (scripts/bootstrap.sh)
compiles it in place. Set ``TP_FASTCORE_DEBUG=1`` for an unoptimized build with assertions
and debug symbols (for gdb, valgrind or sanitizers via CFLAGS).
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

_SOURCES = ["module.c", "core.c", "book.c", "matches.c", "itch.c", "unwire.c"]
_DEPENDS = ["core.h", "book.h", "matches.h", "itch.h", "wire.h", "unwire.h"]
_WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]

if os.environ.get("TP_FASTCORE_DEBUG") == "1":
    _FLAGS = ["-std=c11", "-O0", "-g3", "-UNDEBUG", *_WARNINGS]
else:
    _FLAGS = ["-std=c11", "-O2", *_WARNINGS]

setup(
    ext_modules=[
        Extension(
            "normalize._fastcore",
            sources=[f"normalize/_fastcore/{name}" for name in _SOURCES],
            depends=[f"normalize/_fastcore/{name}" for name in _DEPENDS],
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "fanout._fastwrite",
            sources=["fanout/_fastwrite.c"],
            extra_compile_args=_FLAGS,
        ),
    ]
)
