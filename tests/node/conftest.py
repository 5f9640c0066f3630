"""Fixtures shared by the node tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chain.sigverify import SignatureVerifier


@pytest.fixture(scope="module")
def verifier() -> Iterator[SignatureVerifier]:
    """A thread-pool signature verifier for in-process nodes (no spawned workers)."""
    v = SignatureVerifier(1, kind="thread")
    yield v
    v.close()
