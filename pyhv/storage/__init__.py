"""Disk images: VHD, VHDX and raw, differencing chains, and the operations on them.

``open_image(path, writable=False)`` is the one entry point; see :mod:`pyhv.storage.image` for
the protocol the returned object follows.
"""

from __future__ import annotations

import os

from pyhv.storage.chains import driver_for, format_for_name, open_chain, open_layer
from pyhv.storage.create import create_image
from pyhv.storage.formats import Compactable, Differencing, FormatDriver, Resizable
from pyhv.storage.image import (
    CreateSpec,
    DiskImage,
    DiskType,
    Extent,
    ExtentState,
    ImageFormat,
    ImageInfo,
)
from pyhv.storage.probe import detect_format


def open_image(
    path: str | os.PathLike[str], writable: bool = False, *, lock: bool = True
) -> DiskImage:
    """Open an image of any format with its whole parent chain (parents read-only).

    The format comes from the content. Use it as a context manager. Every file of the chain is
    locked against other processes (:mod:`pyhv.storage.locks`) unless ``lock`` is False.

    :raises NotFoundError, InvalidFormat, CorruptImage, UnsupportedFeature, ParentError:
    :raises ConflictError: a file of the chain is in use by another process (a running VM).
    """
    return open_chain(path, writable, lock=lock)


__all__ = [
    "Compactable",
    "CreateSpec",
    "Differencing",
    "DiskImage",
    "DiskType",
    "Extent",
    "ExtentState",
    "FormatDriver",
    "ImageFormat",
    "ImageInfo",
    "Resizable",
    "create_image",
    "detect_format",
    "driver_for",
    "format_for_name",
    "open_image",
    "open_layer",
]
