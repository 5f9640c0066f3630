"""The daemon's process entry tunes the garbage collector and logs slow collections."""

from __future__ import annotations

import gc
import logging

import pytest

from node import daemon


def test_tune_gc_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        daemon._tune_gc()
        assert gc.get_threshold() == (daemon.GC_THRESHOLD0, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_slow_collections_are_logged(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(daemon, "SLOW_GC_S", 0.0)
    callbacks = list(gc.callbacks)
    try:
        daemon._watch_gc()
        logger = logging.getLogger("blackhole")
        monkeypatch.setattr(logger, "propagate", True)
        with caplog.at_level(logging.INFO, logger="blackhole"):
            gc.collect()
        assert any("slow garbage collection" in r.getMessage() for r in caplog.records)
    finally:
        gc.callbacks[:] = callbacks
