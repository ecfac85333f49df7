"""Resize-VHD: change a disk's virtual size through the format's own ``resize``."""

from __future__ import annotations

import os

from pyhv.errors import UnsupportedFeature, UsageError
from pyhv.storage import open_image


def resize_image(path: str | os.PathLike[str], new_size: int) -> int:
    """Set the virtual size of ``path`` to ``new_size``; returns the old size.

    :raises UsageError: a size that is not positive.
    :raises UnsupportedFeature: the format cannot (e.g. shrinking a VHD).
    """
    if new_size <= 0:
        raise UsageError(f"invalid size {new_size}: a disk must be larger than 0 bytes")
    with open_image(path, writable=True) as image:
        old = image.size
        if new_size == old:
            return old
        resize = getattr(image, "resize", None)
        if resize is None:
            raise UnsupportedFeature(f"{image.path}: {image.format.value} images cannot be resized")
        resize(new_size)
        image.flush()
        return old
