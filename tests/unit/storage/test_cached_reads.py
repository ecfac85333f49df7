"""CachedReads (``preadv`` with RWF_NOWAIT) and RawImage.read_cached: data or None, never a wait."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyhv.storage import CreateSpec, create_image, open_image
from pyhv.storage.fileio import CachedReads
from pyhv.units import MiB

needs_nowait = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no RWF_NOWAIT here")


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    content = os.urandom(64 * 1024)
    path = tmp_path / "f"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    yield fd, content
    os.close(fd)


def fake_preadv(result: Any) -> Any:
    """An ``os.preadv`` that raises ``result`` if it is an exception, else fills that much."""
    calls: list[int] = []

    def preadv(fd: int, bufs: list[bytearray], offset: int, flags: int = 0) -> int:
        calls.append(flags)
        if isinstance(result, BaseException):
            raise result
        return int(result)

    preadv.calls = calls  # type: ignore[attr-defined]
    return preadv


@needs_nowait
def test_cached_data_comes_back(data_file: tuple[int, bytes]) -> None:
    fd, content = data_file
    reads = CachedReads(fd)
    # Just written, so in the page cache; a file system without RWF_NOWAIT answers None.
    got = reads.read(100, 5000)
    assert got is None or bytes(got) == content[100:5100]
    if reads.supported:
        assert got is not None


@needs_nowait
def test_eagain_short_reads_and_io_errors_fall_back_without_giving_up(
    data_file: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fd, content = data_file
    reads = CachedReads(fd)
    monkeypatch.setattr(os, "preadv", fake_preadv(BlockingIOError(errno.EAGAIN, "not cached")))
    assert reads.read(0, 4096) is None and reads.supported
    monkeypatch.setattr(os, "preadv", fake_preadv(100))  # partly cached
    assert reads.read(0, 4096) is None and reads.supported
    # An I/O error is the blocking read's to report.
    monkeypatch.setattr(os, "preadv", fake_preadv(OSError(errno.EIO, "I/O error")))
    assert reads.read(0, 4096) is None and reads.supported
    monkeypatch.undo()
    assert reads.read(len(content) - 10, 20) is None  # past the end: the blocking read's job


@needs_nowait
@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EINVAL])
def test_unsupported_file_system_is_asked_once(
    data_file: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    fd, _ = data_file
    reads = CachedReads(fd)
    preadv = fake_preadv(OSError(code, os.strerror(code)))
    monkeypatch.setattr(os, "preadv", preadv)
    assert reads.read(0, 4096) is None and not reads.supported
    assert reads.read(0, 4096) is None
    assert preadv.calls == [os.RWF_NOWAIT]  # not asked again


def test_raw_read_cached_matches_read_or_declines(tmp_path: Path) -> None:
    path = tmp_path / "d.raw"
    create_image(path, CreateSpec(size=4 * MiB))
    with open_image(path, writable=True) as img:
        img.write(MiB - 7, b"raw data" * 100)
        for offset, length in ((MiB - 7, 800), (0, 4096), (4 * MiB - 512, 512)):
            got = img.read_cached(offset, length)
            assert got is None or bytes(got) == img.read(offset, length)
        assert img.read_cached(4 * MiB - 512, 513) is None  # past the end: read() raises
        assert img.read_cached(-1, 2) is None
    assert img.read_cached(0, 512) is None  # closed
