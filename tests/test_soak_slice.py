"""A short seeded slice of `make soak`: load, two validators SIGKILLed and restarted.

tools/soak.py drives four real node processes; this slice runs ~25 s of load
with a kill every 10 s, then checks the soak's own verdicts (no fork, no
acknowledged transaction lost, no double sign) and that the chain kept going.
"""

from __future__ import annotations

import re
from pathlib import Path

from tools.soak import soak, summary_line


def test_soak_slice(tmp_path: Path) -> None:
    r = soak(duration=25, kill_every=10, seed=7, rate=40, n_accounts=80, drain=20,
             quiesce=0.5, down=1.0, out=tmp_path, log=False)
    line = summary_line(r)
    assert re.fullmatch(r"soak heights_gained=\d+ forks=0 lost_txs=0 double_signs=0 duration_s=\d+ kills=2", line), line
    assert r["heights_gained"] >= 10, r
    assert r["acked"] >= 200 and r["committed"] == r["acked"], r
    # every node's log was written by a process the soak started, stopped and restarted
    assert sum(len(list((tmp_path / f"node{i}").glob("node-*.log"))) for i in range(4)) == 4 + 2
