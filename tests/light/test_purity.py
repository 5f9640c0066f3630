"""The light client's verification path loads neither LevelDB, nor an event loop, nor node/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_light_imports_no_plyvel_trio_or_node() -> None:
    code = (
        "import sys\n"
        "import light.client, light.queries, light.verifier, light.store, light.rpc, light.evidence\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('plyvel', 'trio', 'node'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "", out.stdout
