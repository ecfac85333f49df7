"""The VM's disks as the worker serves them: images opened once, exported over NBD to QEMU.

The worker holds every image open (with its whole differencing chain) for as long as QEMU may
touch it; QEMU only ever sees NBD exports named after the SCSI position (``scsi<c>-<slot>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from pyhv.errors import ConflictError, NotFoundError, PyhvError
from pyhv.model import DiskAttachment, DiskStats, VmConfig
from pyhv.storage import DiskImage, open_image
from pyhv.storage.nbd.server import NbdServer
from pyhv.worker.qemu_argv import DiskPlan, DiskWiring, plan_disk
from pyhv.worker.qmp import Qmp

log = logging.getLogger(__name__)


def export_name(controller: int, slot: int) -> str:
    return f"scsi{controller}-{slot}"


def disk_stats(snapshot: dict[str, dict[str, float]]) -> DiskStats:
    """The provider's counters in the shape ``pyhv vm show`` reports."""
    read, write = snapshot.get("read", {}), snapshot.get("write", {})
    return DiskStats(
        read_ops=int(read.get("ops", 0)),
        write_ops=int(write.get("ops", 0)),
        read_bytes=int(read.get("bytes", 0)),
        write_bytes=int(write.get("bytes", 0)),
        flush_ops=int(snapshot.get("flush", {}).get("ops", 0)),
        read_latency_ms_avg=read.get("latency_us_mean", 0.0) / 1000 if read.get("ops") else None,
        write_latency_ms_avg=(
            write.get("latency_us_mean", 0.0) / 1000 if write.get("ops") else None
        ),
    )


class DiskProvider:
    """Opens the configured disks and serves them on the VM's NBD socket."""

    def __init__(self, socket_path: Path) -> None:
        self._socket = socket_path
        self._server = NbdServer(socket_path)
        self._images: dict[tuple[int, int], DiskImage] = {}
        self._plans: dict[tuple[int, int], DiskPlan] = {}
        self._started = False

    async def _serve(self, controller: int, disk: DiskAttachment) -> DiskWiring:
        image = await asyncio.to_thread(open_image, disk.path, not disk.read_only)
        wiring = DiskWiring(
            controller, disk.slot, export_name(controller, disk.slot), disk.read_only
        )
        try:
            if not self._started:
                await self._server.start()
                self._started = True
            self._server.add_export(wiring.export, image, wiring.read_only)
        except BaseException:
            image.close()
            raise
        self._images[(controller, disk.slot)] = image
        self._plans[(controller, disk.slot)] = plan_disk(wiring, self._socket, disk)
        return wiring

    async def start(self, config: VmConfig) -> list[DiskWiring]:
        """:raises StorageError, NotFoundError: when an image cannot be opened."""
        return [await self._serve(controller, disk) for controller, disk in config.disks()]

    async def hot_add(self, qmp: Qmp, controller: int, disk: DiskAttachment) -> None:
        """Serve the disk, then plug it into the running VM the way the argv wires disks.

        :raises ConflictError: when the slot is taken.
        """
        key = (controller, disk.slot)
        if key in self._images:
            raise ConflictError(f"SCSI slot {controller}:{disk.slot} already holds a disk")
        await self._serve(controller, disk)
        plan = self._plans[key]
        try:
            for obj in plan.objects:
                await qmp.execute("object-add", obj)
            for node in plan.blockdevs:
                await qmp.execute("blockdev-add", node)
            await qmp.execute("device_add", plan.device)
        except PyhvError:
            await self._unplug_backends(qmp, key)
            raise

    async def hot_remove(
        self,
        qmp: Qmp,
        controller: int,
        slot: int,
        deleted: Callable[[str], asyncio.Future[None]],
    ) -> None:
        """Unplug the disk (QEMU confirms with DEVICE_DELETED), then stop serving it.

        :param deleted: a future for the DEVICE_DELETED event of a device id; called before
            ``device_del`` so the event cannot be missed.
        :raises NotFoundError: when no disk is in that slot.
        """
        key = (controller, slot)
        if key not in self._plans:
            raise NotFoundError(f"no disk in SCSI slot {controller}:{slot}")
        device_id = self._plans[key].device["id"]
        gone = deleted(device_id)
        try:
            await qmp.execute("device_del", {"id": device_id})
        except BaseException:
            gone.cancel()
            raise
        await gone
        await self._unplug_backends(qmp, key)

    async def _unplug_backends(self, qmp: Qmp, key: tuple[int, int]) -> None:
        plan = self._plans.pop(key)
        for node in reversed(plan.blockdevs):
            with contextlib.suppress(PyhvError):
                await qmp.execute("blockdev-del", {"node-name": node["node-name"]})
        for obj in plan.objects:
            with contextlib.suppress(PyhvError):
                await qmp.execute("object-del", {"id": obj["id"]})
        image = await self._server.remove_export(export_name(*key))
        del self._images[key]
        await asyncio.to_thread(_flush_close, image)

    def image(self, controller: int, slot: int) -> DiskImage:
        """The image served for a disk now (a checkpoint flushes it and builds on it)."""
        return self._images[(controller, slot)]

    async def swap_image(self, controller: int, slot: int, image: DiskImage) -> DiskImage:
        """Serve ``image`` for the disk from now on; returns the one it replaced, to close."""
        old = await self._server.swap_image(export_name(controller, slot), image)
        self._images[(controller, slot)] = image
        return old

    async def flush(self, controller: int, slot: int) -> None:
        """Flush a disk as QEMU's FLUSH would: only if it was written since the last one."""
        await self._server.flush(export_name(controller, slot))

    def stats(self) -> dict[str, DiskStats]:
        return {
            f"{c}:{s}": disk_stats(self._server.stats(export_name(c, s))) for c, s in self._images
        }

    async def close(self) -> None:
        """Stop serving, then flush and close every image (after QEMU is gone)."""
        if self._started:
            await self._server.close()
        for key, image in list(self._images.items()):
            try:
                await asyncio.to_thread(_flush_close, image)
            except Exception:
                log.exception("closing disk %s failed", image.path)
            del self._images[key]


def _flush_close(image: DiskImage) -> None:
    try:
        if image.writable:
            image.flush()
    finally:
        image.close()
