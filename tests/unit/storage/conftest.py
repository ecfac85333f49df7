"""Fixtures shared by the storage tests (``vhdx/`` included)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from pyhv.storage.fileio import CachedReads
from pyhv.storage.image import DiskImage

CheckRanges = Callable[[DiskImage, bytearray, list[tuple[int, int]]], None]


@pytest.fixture
def always_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file range counts as cached (a plain pread): ``read_cached`` tests then check the
    block mapping, not the page cache."""
    monkeypatch.setattr(CachedReads, "read", lambda self, off, n: os.pread(self.fd, n, off))


def _check_ranges(img: DiskImage, model: bytearray, ranges: list[tuple[int, int]]) -> None:
    for offset, length in ranges:
        want = bytes(model[offset : offset + length])
        assert img.read(offset, length) == want, (offset, length)
        assert img.read_cached(offset, length) == want, (offset, length)


@pytest.fixture
def check_ranges() -> CheckRanges:
    """``check_ranges(img, model, ranges)``: ``read`` and ``read_cached`` both give the model."""
    return _check_ranges
