from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.light.fixtures import Served, TamperProxy, World


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("lightworld"))
    yield w
    w.close()


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[Served]:
    s = Served(world.view)
    yield s
    s.stop()


@pytest.fixture
def proxy(served: Served) -> Iterator[TamperProxy]:
    p = TamperProxy(served.port)
    yield p
    p.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "light"
