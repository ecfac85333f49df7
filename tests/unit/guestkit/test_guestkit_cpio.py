from __future__ import annotations

import io
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pyhv.guestkit import cpio

ENTRIES = [
    cpio.Entry("bin", stat.S_IFDIR | 0o755),
    cpio.Entry("bin/busybox", stat.S_IFREG | 0o755, b"\x7fELF" + bytes(range(7))),
    cpio.Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
    cpio.Entry("dev", stat.S_IFDIR | 0o755),
    cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
    cpio.Entry("empty", stat.S_IFREG | 0o644),
]


def archive(entries: list[cpio.Entry]) -> bytes:
    out = io.BytesIO()
    cpio.write(entries, out)
    return out.getvalue()


def test_round_trip_keeps_names_modes_data_and_devices() -> None:
    assert cpio.read(archive(ENTRIES)) == ENTRIES


def test_members_are_aligned_and_end_with_trailer() -> None:
    data = archive(ENTRIES)
    assert data.startswith(b"070701")
    assert b"TRAILER!!!\0" in data
    assert len(data) % 4 == 0


def test_same_entries_give_same_bytes() -> None:
    assert archive(ENTRIES) == archive(list(ENTRIES))


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_gnu_cpio_reads_the_archive(tmp_path: Path) -> None:
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=archive(ENTRIES), capture_output=True, check=True
    ).stdout.decode()
    assert listing.split() == [e.path for e in ENTRIES]
    verbose = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=archive(ENTRIES), capture_output=True, check=True
    ).stdout.decode()
    assert "bin/sh -> busybox" in verbose
    assert verbose.splitlines()[4].startswith("crw-------")


def test_absolute_names_are_refused() -> None:
    with pytest.raises(ValueError, match="relative"):
        cpio.Entry("/init", stat.S_IFREG | 0o755)


def test_reader_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="no newc header"):
        cpio.read(b"not an archive")
