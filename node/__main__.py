"""``python -m node --home DIR``: run a node from its home directory.

The ``blackhole start`` command of the CLI calls the same ``node.daemon.run``.
"""

from __future__ import annotations

import argparse
import sys

from node.daemon import run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m node", description="Run a Blackhole node.")
    ap.add_argument("--home", required=True, help="the node's home directory")
    args = ap.parse_args(argv)
    return run(args.home)


if __name__ == "__main__":
    sys.exit(main())
