"""A checkpoint's disk half, run by the worker while the guest is stopped: every disk's
current image becomes the frozen checkpoint image and the export continues in a new
differencing child, created here (after the flush) so it names the parent's final identity.

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

from pyhv.storage import CreateSpec, DiskImage, create_image, open_image
from pyhv.worker.disks import DiskProvider

log = logging.getLogger(__name__)

DiskKey = tuple[int, int]  # (controller, slot)


def parse_disk_key(key: str) -> DiskKey:
    """``"controller:slot"`` as the checkpoint tree writes it."""
    controller, slot = key.split(":")
    return int(controller), int(slot)


@dataclass
class SwappedDisks:
    """The swaps done so far: ``old`` images still open, children by key."""

    provider: DiskProvider
    old: dict[DiskKey, DiskImage] = field(default_factory=dict)
    children: dict[DiskKey, Path] = field(default_factory=dict)

    async def undo(self) -> None:
        """Serve the old images again and delete the children (nothing was written to them:
        the guest has not run since the swap)."""
        for key, old in self.old.items():
            child = await self.provider.swap_image(*key, old)
            await asyncio.to_thread(child.close)
        for path in self.children.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
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


async def swap_in_children(provider: DiskProvider, children: dict[DiskKey, Path]) -> SwappedDisks:
    """Flush each disk, create its child, serve the child. Call with the guest stopped.

    :raises StorageError, ConflictError: a child cannot be made or opened; what was swapped
        before is undone.
    """
    done = SwappedDisks(provider)
    try:
        for key, path in children.items():
            current = provider.image(*key)
            child = await asyncio.to_thread(_make_child, current, path)
            done.children[key] = path
            try:
                done.old[key] = await provider.swap_image(*key, child)
            except BaseException:
                await asyncio.to_thread(child.close)
                raise
    except BaseException:
        await done.undo()
        raise
    return done


def _make_child(current: DiskImage, path: Path) -> DiskImage:
    current.flush()
    create_image(path, CreateSpec(size=0, parent=str(current.path)))
    try:
        return open_image(path, writable=True)
    except BaseException:
        path.unlink()
        raise
