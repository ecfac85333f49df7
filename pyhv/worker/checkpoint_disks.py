"""A checkpoint's disk half: every disk's current image becomes the frozen checkpoint image
and the export continues in a new differencing child.

The children are made while the guest still runs (:func:`make_children`), to keep that work
out of the stop: a child reads through to its parent, so what the guest writes meanwhile
still goes into the checkpoint. A child must name its parent's final identity, though, and a
VHDX parent takes a new DataWriteGuid at the first write after it was opened: the parent's
identity is settled before its child is made (:meth:`DiskImage.settle_identity`). Should it
have changed anyway, :func:`swap_in_children` makes the child again, with the guest stopped.

QEMU keeps its NBD connections; :meth:`DiskProvider.swap_image` holds requests across the
swap. Until :meth:`SwappedDisks.commit` the old images stay open writable, so
:meth:`SwappedDisks.undo` can put them back and delete the children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pyhv.model import VmConfig
from pyhv.storage import CreateSpec, DiskImage, create_image, open_image
from pyhv.storage.chains import identity_matches
from pyhv.worker.disks import DiskProvider

log = logging.getLogger(__name__)

DiskKey = tuple[int, int]  # (controller, slot)


def parse_disk_key(key: str) -> DiskKey:
    """``"controller:slot"`` as the checkpoint tree writes it."""
    controller, slot = key.split(":")
    return int(controller), int(slot)


@dataclass
class SwappedDisks:
    """Children made (``opened`` until served), swaps done (``old`` images still open)."""

    provider: DiskProvider
    opened: dict[DiskKey, DiskImage] = field(default_factory=dict)
    old: dict[DiskKey, DiskImage] = field(default_factory=dict)
    children: dict[DiskKey, Path] = field(default_factory=dict)

    async def undo(self) -> None:
        """Serve the old images again and delete the children (nothing was written to them:
        the guest has not run since the swap)."""
        for key, old in self.old.items():
            child = await self.provider.swap_image(*key, old)
            await asyncio.to_thread(child.close)
        for image in self.opened.values():
            await asyncio.to_thread(image.close)
        for path in self.children.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.opened.clear()
        self.old.clear()
        self.children.clear()

    async def commit(self) -> None:
        """Close the old images for good: they are the checkpoint's read-only images now."""
        for old in self.old.values():
            try:
                await asyncio.to_thread(old.close)
            except Exception:
                log.exception("closing frozen image %s failed", old.path)
        self.old.clear()


async def make_children(provider: DiskProvider, children: dict[DiskKey, Path]) -> SwappedDisks:
    """Make and open each disk's child while the guest runs.

    :raises StorageError, ConflictError: a child cannot be made or opened; those made are
        deleted.
    """
    done = SwappedDisks(provider)
    try:
        for key, path in children.items():
            done.opened[key] = await asyncio.to_thread(_make_child, provider.image(*key), path)
            done.children[key] = path
    except BaseException:
        await done.undo()
        raise
    return done


async def swap_in_children(done: SwappedDisks) -> None:
    """Flush each disk and serve its child from now on. Call with the guest stopped.

    :raises StorageError, ConflictError: a child cannot be made again; the caller undoes.
    """
    for key in list(done.opened):
        current = done.provider.image(*key)
        await done.provider.flush(*key)
        child = done.opened[key]
        if not identity_matches(child, current.identity):
            log.info("%s changed its identity: making %s again", current.path, child.path)
            del done.opened[key]
            await asyncio.to_thread(child.close)
            done.children[key].unlink()
            child = await asyncio.to_thread(_make_child, current, done.children[key])
            done.opened[key] = child
        done.old[key] = await done.provider.swap_image(*key, child)
        del done.opened[key]


def record_paths(config: VmConfig, disks: dict[DiskKey, Path]) -> None:
    """Keep the worker's copy of the configuration in step with what it serves."""
    for controller, disk in config.disks():
        new = disks.get((controller, disk.slot))
        if new is not None:
            disk.path = new


def _make_child(current: DiskImage, path: Path) -> DiskImage:
    current.settle_identity()
    current.flush()
    create_image(path, CreateSpec(size=0, parent=str(current.path)))
    try:
        return open_image(path, writable=True)
    except BaseException:
        path.unlink()
        raise
