"""File-level steps the operations share: publish a finished file, remove, make renames durable."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pyhv.errors import ConflictError


def publish(tmp: Path, final: Path) -> None:
    """Give the finished ``tmp`` its real name without ever replacing a file at ``final``.

    ``link`` fails when ``final`` exists, where ``rename`` would silently overwrite it.
    """
    try:
        os.link(tmp, final)
    except FileExistsError as e:
        raise ConflictError(f"{final} appeared while it was being written; result left out") from e
    os.unlink(tmp)


def remove_quietly(path: Path) -> None:
    """Best-effort cleanup on a failure path, where a second error would hide the first."""
    with contextlib.suppress(OSError):
        path.unlink()


def fsync_dir(folder: Path) -> None:
    """Make a rename, link or unlink in ``folder`` survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
