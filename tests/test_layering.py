"""The arrows of ../shared/DESIGN.md only point downwards.

Every module of every package is parsed (not imported) and each import of one of
our packages is checked against the allowed edges below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"vm", "storage", "p2p", "chain", "consensus", "genesis", "node", "light"}
ALLOWED: dict[str, set[str]] = {
    "vm": set(),
    "storage": set(),
    "p2p": set(),
    "chain": {"vm", "storage"},
    "consensus": {"chain", "storage", "vm"},
    "genesis": {"chain", "storage", "vm"},
    "node": OURS,
    "light": {"chain", "consensus", "storage", "vm"},
}
# Light verification must never need LevelDB or an event loop.
LIGHT_FORBIDDEN_ON_VERIFY_PATH = {"plyvel", "trio"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(OURS))
def test_imports_point_downwards(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_packages(path) & OURS:
            if name != package and name not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_storage_proof_verifier_is_pure() -> None:
    """The module the light client imports to check proofs pulls in no plyvel."""
    for path in sorted((ROOT / "storage").glob("proof*.py")):
        assert not imported_packages(path) & LIGHT_FORBIDDEN_ON_VERIFY_PATH, path
