"""VHDX images: fixed, dynamic and differencing, with log replay and logged metadata updates.

# Ref: [MS-VHDX] v20180912 (Microsoft Open Specifications). Pure modules follow the spec's
structures: ``structs`` (layouts, constants), ``header``, ``region``, ``metadata``, ``bat``,
``log``, ``io`` (virtual range → runs), ``parent`` (locator paths). File access: ``handle`` (the
only fd user), ``journal`` (headers, replay, logged transactions), ``layout`` (loading and
validating the structures), ``image`` (VhdxImage), ``maintain`` (resize, compact, re-linking),
``create``, ``check``.
"""

from __future__ import annotations

from pathlib import Path

from pyhv.storage.image import CreateSpec, DiskImage, ImageFormat
from pyhv.storage.vhdx import check as _check
from pyhv.storage.vhdx import create as _create
from pyhv.storage.vhdx.image import VhdxImage

__all__ = ["FORMAT", "VhdxFormat", "VhdxImage"]


class VhdxFormat:
    """The :class:`pyhv.storage.formats.FormatDriver` of VHDX."""

    format = ImageFormat.VHDX

    def open_layer(self, path: Path, writable: bool) -> DiskImage:
        return VhdxImage(Path(path), writable)

    def create(self, path: Path, spec: CreateSpec, parent: DiskImage | None) -> None:
        _create.create(Path(path), spec, parent)

    def check(self, path: Path, repair: bool) -> list[str]:
        return _check.check(Path(path), repair)


FORMAT = VhdxFormat()
