"""Shared test configuration.

Hypothesis runs without deadlines (these machines' speed swings by 2x) and, under
CI=true, derandomized so that a CI failure replays exactly on a developer's machine.
"""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
    print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_sessionstart(session: object) -> None:
    """Rebuild a compiled module that is older than its source (storage/accel.py),
    so that a test run after an edit tests the edit compiled, as `make test` does,
    and no child process prints the stale-build note into output a test reads."""
    from tools import accel

    for module in accel.MODULES:
        src = accel.source_path(module)
        if not any(src.parent.glob("_" + src.stem + "_c*.so")):
            continue  # never built here (no compiler): plain Python, nothing to refresh
        if accel.built_digest(module) != accel.current_digest(module):
            subprocess.run([sys.executable, "-m", "tools.accel"], cwd=accel.ROOT, check=False)
