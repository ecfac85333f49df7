"""The interface each format package (``vhd``, ``vhdx``, ``raw``) offers to the storage core.

A format package exposes a module-level object ``FORMAT`` implementing :class:`FormatDriver`.
``open_layer`` opens one file without resolving its parent; the chain logic in
:mod:`pyhv.storage.chains` finds, opens and verifies parents and calls ``attach_parent``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pyhv.storage.image import CreateSpec, DiskImage, ImageFormat


class FormatDriver(Protocol):
    format: ImageFormat

    def open_layer(self, path: Path, writable: bool) -> DiskImage:
        """Open one image file; for a differencing image ``parent`` stays None.

        :raises InvalidFormat, CorruptImage, UnsupportedFeature: on bad content.
        """
        ...

    def create(self, path: Path, spec: CreateSpec, parent: DiskImage | None) -> None:
        """Write a new empty image (``parent`` is the opened parent for differencing)."""
        ...

    def check(self, path: Path, repair: bool) -> list[str]:
        """One line per problem in this file's own structures (not its parents); [] when sound."""
        ...


class Differencing(Protocol):
    """What a differencing layer adds to :class:`DiskImage`."""

    def parent_candidates(self) -> list[Path]:
        """Where the parent may be, in the order the format's rules say to try."""
        ...

    @property
    def parent_identity(self) -> bytes:
        """The parent's ``identity`` this child was made against."""
        ...

    def attach_parent(self, parent: DiskImage) -> None: ...

    def set_parent_locator(self, parent: DiskImage, parent_path: Path) -> None:
        """Rewrite the locators to ``parent_path`` (``pyhv vhd set-parent``); identity unchanged."""
        ...


class Resizable(Protocol):
    """Images whose virtual size can change (VHD: grow only; VHDX: grow and shrink; raw)."""

    def resize(self, new_size: int) -> None:
        """Change the virtual size, crash-safe; the image must be open writable.

        :raises UnsupportedFeature: the format cannot do it (e.g. shrinking a VHD).
        :raises UsageError: ``new_size`` is invalid for the format (limits, alignment).
        """
        ...


class Compactable(Protocol):
    """Images that can give back space held by blocks reading as zeros (Optimize-VHD)."""

    def compact(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Free zero blocks (in differencing layers only where the parent reads zeros too)
        and shrink the file; returns the bytes given back. ``progress(done, total)`` is
        called now and then. Crash-safe; the image must be open writable.
        """
        ...
