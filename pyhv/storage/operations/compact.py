"""Optimize-VHD: hand back the space of blocks that read as zeros, through the format."""

from __future__ import annotations

import os
import shlex

from pyhv.errors import UnsupportedFeature
from pyhv.storage import open_image
from pyhv.storage.image import DiskType, ImageFormat
from pyhv.storage.operations.progress import Progress


def compact_image(path: str | os.PathLike[str], progress: Progress | None = None) -> int:
    """Compact ``path`` in place; returns the bytes given back to the file system.

    Dynamic and differencing VHD/VHDX disks give back their zero blocks. A fixed VHD or VHDX
    is refused, as Optimize-VHD refuses it: its file holds every block by design, with no
    allocation table to free blocks from. A raw image, fixed (fully allocated) or not, gets
    holes punched where it reads zeros: the file system's allocation is its only table.

    :raises UnsupportedFeature: a fixed VHD/VHDX, or a format without compaction; the file is
        left as it was.
    """
    with open_image(path, writable=True) as image:
        fmt = image.format
        kind = fmt.value if fmt is ImageFormat.RAW else fmt.value.upper()
        # Every VHD/VHDX image has a compact method (a fixed one's does nothing): ask the type.
        if image.disk_type is DiskType.FIXED and fmt is not ImageFormat.RAW:
            raise UnsupportedFeature(
                f"{image.path}: cannot compact a fixed {kind} disk, it has no unused blocks to "
                "give back (only dynamic and differencing disks can be compacted); make a "
                f"dynamic copy with: pyhv vhd convert {shlex.quote(str(image.path))} "
                f"NEW.{fmt.value} --dynamic"
            )
        compact = getattr(image, "compact", None)
        if compact is None:
            raise UnsupportedFeature(
                f"{image.path}: {image.disk_type.value} {kind} images cannot be compacted"
            )
        freed = int(compact(progress))
        image.flush()
        return freed
