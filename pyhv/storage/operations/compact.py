"""Optimize-VHD: hand back the space of blocks that read as zeros, through the format."""

from __future__ import annotations

import os

from pyhv.errors import UnsupportedFeature
from pyhv.storage import open_image
from pyhv.storage.image import DiskType
from pyhv.storage.operations.progress import Progress


def compact_image(path: str | os.PathLike[str], progress: Progress | None = None) -> int:
    """Compact ``path`` in place; returns the bytes given back to the file system.

    :raises UnsupportedFeature: the format has no compaction (e.g. fixed VHD).
    """
    with open_image(path, writable=True) as image:
        compact = getattr(image, "compact", None)
        if compact is None:
            hint = (
                "; convert to a dynamic disk instead" if image.disk_type == DiskType.FIXED else ""
            )
            raise UnsupportedFeature(
                f"{image.path}: {image.disk_type.value} {image.format.value} images cannot be "
                f"compacted{hint}"
            )
        freed = int(compact(progress))
        image.flush()
        return freed
