"""Merge-VHD: fold a differencing disk, and the disks between, into its parent or an ancestor.

Why it is crash-safe: every byte written into the ancestor is the byte the child already
shows there. Where an upper layer holds the byte, the ancestor's copy is hidden from the child;
where none does, the child shows the ancestor's own byte and the write changes nothing. So the
child's view is the same before, during and after the copy, and a crash at any point leaves the
child chain reading exactly as before. The merged files are removed only after the ancestor is
flushed, the child first, so no remaining file ever loses its parent; running the merge again
after a crash finishes it.

That argument also needs the child to stay linked to the ancestor while it changes: a VHDX
ancestor would take a new DataWriteGuid at its first write, which the child's parent_linkage
does not name, so the ancestor is asked to keep its identity (``keep_identity``) for this copy,
and takes a new one once the merged files are gone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from pyhv.errors import UnsupportedFeature, UsageError
from pyhv.storage import open_image
from pyhv.storage.image import DiskImage, DiskType, ExtentState
from pyhv.storage.operations.files import fsync_dir
from pyhv.storage.operations.progress import Progress
from pyhv.storage.operations.ranges import Range, union
from pyhv.storage.operations.transfer import copy_ranges


def merge_image(
    child: str | os.PathLike[str],
    into: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Merge ``child`` and the layers up to ``into`` (default: the parent) into ``into``.

    Returns the path of the ancestor that now holds the data; the merged files are deleted.

    :raises UsageError: ``child`` is not differencing, or ``into`` is not one of its ancestors.
    """
    with open_image(child) as top:
        layers = top.chain()
        depth = _ancestor_depth(top, layers, into)
        target_path = layers[depth].path
        merged = [layer.path for layer in layers[:depth]]
        ranges = held_ranges(layers[:depth])
        with open_image(target_path, writable=True) as target:
            renew = isinstance(target, KeepsIdentity)
            if isinstance(target, KeepsIdentity):
                target.keep_identity = True
            _match_size(target, top.size)
            copy_ranges(top, target, ranges, dst_reads_zero=False, progress=progress)
            target.flush()
    for path in merged:
        path.unlink()
    for folder in {p.parent for p in merged}:
        fsync_dir(folder)
    if renew:
        _renew_identity(target_path)
    return target_path


def _renew_identity(path: Path) -> None:
    """The ancestor's data did change: now that no merged child needs its old identity, a data
    write gives it a new one, so its other children (which the merge invalidated) are caught."""
    with open_image(path, writable=True) as image:
        image.write(0, image.read(0, image.logical_sector_size))
        image.flush()


@runtime_checkable
class KeepsIdentity(Protocol):
    """Images whose identity would change on a data write (VHDX), but can be told not to."""

    keep_identity: bool


def _ancestor_depth(
    top: DiskImage, layers: list[DiskImage], into: str | os.PathLike[str] | None
) -> int:
    if top.disk_type != DiskType.DIFFERENCING:
        raise UsageError(f"{top.path} is not a differencing disk: there is nothing to merge")
    if into is None:
        return 1
    for depth, layer in enumerate(layers[1:], start=1):
        if _same_file(layer.path, Path(into)):
            return depth
    names = ", ".join(str(layer.path) for layer in layers[1:])
    raise UsageError(f"{into} is not an ancestor of {top.path} (its ancestors: {names})")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def held_ranges(layers: list[DiskImage]) -> list[Range]:
    """Where any of ``layers`` holds data or zeros of its own, i.e. does not defer to a parent."""
    return union(
        (e.offset, e.length)
        for layer in layers
        for e in layer.extents(chain=False)
        if e.state != ExtentState.BACKING
    )


def _match_size(target: DiskImage, size: int) -> None:
    """A child may have been grown past its parent; the ancestor then grows first."""
    if target.size >= size:
        return
    resize = getattr(target, "resize", None)
    if resize is None:
        raise UnsupportedFeature(
            f"{target.path} is smaller than the disk merged into it and cannot be resized"
        )
    resize(size)
