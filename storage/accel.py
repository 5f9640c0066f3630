"""Choosing between a hot module and its mypyc-compiled build.

A few modules (today storage.treekernel) are plain typed Python that mypyc can
compile. `tools/accel.py` (run by `make accel`, which `make test`, `make devnet`
and `make bench` run first) copies such a module `pkg/name.py` to
`pkg/_name_c.py` with one line added, `SOURCE_BLAKE3 = "<BLAKE3 of name.py>"`,
compiles the copy with mypyc into an extension module next to it and deletes the
copy. `load` returns that extension only when its SOURCE_BLAKE3 matches the
source file as it is now, so an edited module never runs an old build: it runs
as plain Python (and says so once on stderr) until the build is redone.
`BLACKHOLE_PURE=1` in the environment forces plain Python everywhere.

The two builds compute the same results (tests/storage/test_accel.py runs both
on the same random workloads); the compiled one is faster.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from blake3 import blake3

PURE_ENV = "BLACKHOLE_PURE"
_warned: set[str] = set()


def compiled_name(module_name: str) -> str:
    """'storage.treekernel' -> 'storage._treekernel_c'."""
    package, _, name = module_name.rpartition(".")
    return f"{package}._{name}_c" if package else f"_{name}_c"


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE3 (hex) of a file: what a build records as SOURCE_BLAKE3."""
    with open(path, "rb") as f:
        return blake3(f.read()).hexdigest()


def source_digest(module: ModuleType) -> str:
    """BLAKE3 (hex) of a pure module's source file."""
    return "" if module.__file__ is None else file_digest(module.__file__)


def load(pure: ModuleType) -> ModuleType:
    """The compiled build of `pure` if one built from its current source is
    importable and BLACKHOLE_PURE is unset, else `pure` itself."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return pure
    try:
        compiled = importlib.import_module(compiled_name(pure.__name__))
    except ImportError:
        return pure
    built_from = getattr(compiled, "SOURCE_BLAKE3", None)
    if built_from != source_digest(pure):
        if pure.__name__ not in _warned:
            _warned.add(pure.__name__)
            print(
                f"note: the compiled build of {pure.__name__} is older than its source; "
                "running it as plain Python (run `make accel` to rebuild)",
                file=sys.stderr,
            )
        return pure
    return compiled


def describe(module: ModuleType) -> str:
    """'compiled' for an extension module, 'pure' for Python source."""
    path = module.__file__ or ""
    return "pure" if path.endswith(".py") else "compiled"
