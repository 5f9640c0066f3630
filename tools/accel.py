"""Build the mypyc-compiled copies of the hot modules (see storage/accel.py).

    python -m tools.accel            # build what is missing or stale; a no-op otherwise
    python -m tools.accel --force    # rebuild everything
    python -m tools.accel --strict   # exit 1 instead of falling back to plain Python

For each module `pkg/name.py` listed in MODULES: if `pkg._name_c` is importable and
was built from the current source (its SOURCE_BLAKE3), nothing happens. Otherwise
the source is copied to `pkg/_name_c.py` with SOURCE_BLAKE3 appended, mypyc
compiles the copy in place (build files under build/accel/), and the copy is
deleted, leaving only the extension modules (ignored by git). When mypyc or a C
compiler is missing the build is skipped with a note: the node then runs the plain
Python modules, which compute the same results more slowly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from storage.accel import compiled_name, file_digest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("storage.treekernel",)
BUILD_DIR = ROOT / "build" / "accel"


def source_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def current_digest(module: str) -> str:
    """BLAKE3 (hex) of the module's source as it is now."""
    return file_digest(source_path(module))


def built_digest(module: str) -> str | None:
    """SOURCE_BLAKE3 of the current compiled build, or None (absent or broken).
    Asked in a child process so that this one never imports a stale build."""
    code = (
        "import importlib, sys\n"
        f"m = importlib.import_module({compiled_name(module)!r})\n"
        "f = m.__file__ or ''\n"
        "print('' if f.endswith('.py') else getattr(m, 'SOURCE_BLAKE3', ''))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return r.stdout.strip() or None if r.returncode == 0 else None


def remove_build(module: str) -> None:
    src = source_path(module)
    stem = "_" + src.stem + "_c"
    for path in src.parent.iterdir():
        if path.name.startswith(stem) and path.suffix in (".so", ".pyd", ".py"):
            path.unlink()


def build(module: str) -> None:
    src = source_path(module)
    digest = current_digest(module)
    remove_build(module)
    copy = src.parent / ("_" + src.stem + "_c.py")
    copy.write_text(
        src.read_text()
        + f'\n\nSOURCE_BLAKE3 = "{digest}"\n"""BLAKE3 of the source this build was made from."""\n'
    )
    cwd = os.getcwd()
    try:
        from mypyc.build import mypycify
        from setuptools import setup

        os.chdir(ROOT)  # mypyc names the module after its path from here
        ext_modules = mypycify(
            [str(copy.relative_to(ROOT))], opt_level="3", target_dir=str(BUILD_DIR)
        )
        # setup() runs in an empty directory: in ROOT it would read the project's
        # pyproject.toml, which an older setuptools may not parse.
        work = BUILD_DIR / "setup"
        shutil.rmtree(work, ignore_errors=True)
        out_dir = work / src.parent.relative_to(ROOT)
        out_dir.mkdir(parents=True)
        os.chdir(work)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            setup(
                name="blackhole-accel",
                ext_modules=ext_modules,
                script_args=["-q", "build_ext", "--inplace", "--build-temp", str(BUILD_DIR / "tmp")],
            )
        built = list(out_dir.glob(copy.stem + "*"))
        if not built:
            raise RuntimeError("mypyc produced no extension module")
        for path in built:
            # A new file, never an overwrite: running processes keep their mapping.
            shutil.move(str(path), str(src.parent / path.name))
    finally:
        os.chdir(cwd)
        copy.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--strict", action="store_true", help="fail instead of falling back")
    args = ap.parse_args()
    status = 0
    for module in MODULES:
        digest = current_digest(module)
        if not args.force and built_digest(module) == digest:
            print(f"accel: {module} compiled build is up to date")
            continue
        t0 = time.monotonic()
        try:
            build(module)
        except (Exception, SystemExit) as exc:  # any build failure means "fall back"
            remove_build(module)
            print(
                f"accel: could not compile {module} ({type(exc).__name__}: {exc}); "
                "the node runs it as plain Python",
                file=sys.stderr,
            )
            status = 1 if args.strict else status
            continue
        if built_digest(module) != digest:
            remove_build(module)
            print(f"accel: the build of {module} does not import; plain Python", file=sys.stderr)
            status = 1 if args.strict else status
            continue
        print(f"accel: compiled {module} in {time.monotonic() - t0:.1f} s")
    shutil.rmtree(BUILD_DIR / "tmp", ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
