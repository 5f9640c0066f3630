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
    """Build the compiled modules (storage/accel.py) when they are missing or older
    than their source, as `make test` does first, so that a plain `pytest` after an
    edit tests the edit compiled and no child process prints the stale-build note
    into output a test reads. Where mypyc or a C compiler is missing, tools.accel
    says so and the tests run plain Python (tests/storage/test_accel.py checks
    that this happens only there)."""
    from tools import accel

    if any(accel.built_digest(m) != accel.current_digest(m) for m in accel.MODULES):
        subprocess.run([sys.executable, "-m", "tools.accel"], cwd=accel.ROOT, check=False)
