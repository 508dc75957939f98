"""The heap after start-up: what lives is frozen, the youngest objects are collected less
often (bench/RESULTS.md: the p99 poll latency at 500 meters went from 11-19 ms to 3 ms)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.runtime.app import YOUNG_GC_THRESHOLD, settle_heap


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's own
    yield saved
    gc.set_threshold(*saved)
    gc.unfreeze()


def test_settling_freezes_what_lives_and_collects_the_young_less_often(
        thresholds: tuple[int, int, int]) -> None:
    kept = [object() for _ in range(1000)]
    settle_heap()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 10, 10)
    assert YOUNG_GC_THRESHOLD > 700


def test_a_higher_threshold_of_the_process_is_kept(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(50_000, 20, 30)
    settle_heap()
    assert gc.get_threshold() == (50_000, 20, 30)
