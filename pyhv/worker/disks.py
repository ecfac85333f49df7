"""The VM's disks as the worker serves them: images opened once, exported over NBD to QEMU.

The worker holds every image open (with its whole differencing chain) for as long as QEMU may
touch it; QEMU only ever sees NBD exports named after the SCSI position (``scsi<c>-<slot>``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pyhv.model import DiskStats, VmConfig
from pyhv.storage import DiskImage, open_image
from pyhv.storage.nbd.server import NbdServer
from pyhv.worker.qemu_argv import DiskWiring

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
        self._server = NbdServer(socket_path)
        self._images: dict[tuple[int, int], DiskImage] = {}
        self._started = False

    async def start(self, config: VmConfig) -> list[DiskWiring]:
        """:raises StorageError, NotFoundError: when an image cannot be opened."""
        wirings: list[DiskWiring] = []
        for controller, disk in config.disks():
            image = await asyncio.to_thread(open_image, disk.path, not disk.read_only)
            self._images[(controller, disk.slot)] = image
            wirings.append(
                DiskWiring(
                    controller, disk.slot, export_name(controller, disk.slot), disk.read_only
                )
            )
        if wirings:
            await self._server.start()
            self._started = True
            for w in wirings:
                self._server.add_export(w.export, self._images[(w.controller, w.slot)], w.read_only)
        return wirings

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
