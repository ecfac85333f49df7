"""Opening images with their differencing parents: find, open read-only, verify, attach.

A differencing layer says where its parent may be (``parent_candidates()``) and which identity
it was made against (``parent_identity``); the first candidate that exists is opened read-only,
recursively, and must carry exactly that identity. Loops are caught by real path.
"""

from __future__ import annotations

import importlib
import os
import weakref
from pathlib import Path
from typing import cast

from pyhv.errors import InvalidFormat, NotFoundError, ParentError, UnsupportedFeature
from pyhv.storage.formats import Differencing, FormatDriver
from pyhv.storage.image import DiskImage, DiskType, ImageFormat
from pyhv.storage.locks import lock_image
from pyhv.storage.probe import detect_format

_MODULES = {
    ImageFormat.VHD: "pyhv.storage.vhd",
    ImageFormat.VHDX: "pyhv.storage.vhdx",
    ImageFormat.RAW: "pyhv.storage.raw",
}
_EXTENSIONS = {".vhd": ImageFormat.VHD, ".avhd": ImageFormat.VHD}
_EXTENSIONS |= {".vhdx": ImageFormat.VHDX, ".avhdx": ImageFormat.VHDX}


def driver_for(fmt: ImageFormat) -> FormatDriver:
    """The format package's ``FORMAT`` object.

    :raises UnsupportedFeature: when the package is not available.
    """
    try:
        module = importlib.import_module(_MODULES[fmt])
        return cast(FormatDriver, module.FORMAT)
    except (ImportError, AttributeError) as e:
        raise UnsupportedFeature(f"{fmt.value} images are not supported by this build") from e


def open_layer(
    path: str | os.PathLike[str], writable: bool = False, *, lock: bool = True
) -> DiskImage:
    """Open one file by its content, without its parent (structure-only inspection).

    A file named .vhd/.vhdx whose content is not that format is refused rather than taken as raw.
    ``lock`` takes the file's cross-process lock (:mod:`pyhv.storage.locks`) until the image is
    closed; ``lock=False`` only inspects (a disk list reading the header of a disk in use).

    :raises NotFoundError, InvalidFormat, CorruptImage, UnsupportedFeature:
    :raises ConflictError: another process uses the file in a conflicting way.
    """
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise InvalidFormat(f"{p} is a directory, not a disk image")
    fmt = detect_format(p)
    expected = _EXTENSIONS.get(p.suffix.lower())
    if fmt == ImageFormat.RAW and expected is not None:
        what = "VHD footer ('conectix')" if expected == ImageFormat.VHD else "'vhdxfile' signature"
        raise InvalidFormat(f"{p}: not a {expected.value.upper()} file (no {what})")
    held = lock_image(p, exclusive=writable) if lock else None
    try:
        image = driver_for(fmt).open_layer(p, writable)
    except BaseException:
        if held is not None:
            held.release()
        raise
    if held is not None:
        image.file_lock = held
        # An image dropped without close() must not keep other processes out for good.
        weakref.finalize(image, held.release)
    return image


def open_chain(
    path: str | os.PathLike[str], writable: bool = False, *, lock: bool = True
) -> DiskImage:
    """Open ``path`` and every ancestor (ancestors always read-only, shared-locked).

    :raises ParentError: parent missing, loop, or identity mismatch.
    """
    top = open_layer(path, writable, lock=lock)
    try:
        _attach_ancestors(top, {os.path.realpath(path)}, lock)
    except BaseException:
        top.close()
        raise
    return top


def _attach_ancestors(child: DiskImage, seen: set[str], lock: bool) -> None:
    while child.disk_type == DiskType.DIFFERENCING:
        diff = cast(Differencing, child)
        parent_path = find_parent(child.path, diff.parent_candidates())
        real = os.path.realpath(parent_path)
        if real in seen:
            raise ParentError(f"{child.path}: parent loop: {parent_path} is already in the chain")
        seen.add(real)
        parent = open_layer(parent_path, writable=False, lock=lock)
        try:
            if not identity_matches(child, parent.identity):
                raise ParentError(
                    f"{child.path}: parent {parent_path} has identity {parent.identity.hex()}, "
                    f"but the child was made from {diff.parent_identity.hex()} "
                    "(wrong or modified parent; use set-parent with the right file)"
                )
            diff.attach_parent(parent)
        except BaseException:
            parent.close()
            raise
        child = parent


def identity_matches(child: DiskImage, identity: bytes) -> bool:
    """Whether ``identity`` binds ``child`` to a parent.

    VHDX children also accept their ``parent_linkage2`` ([MS-VHDX] 2.6.2.6.3), so a format may
    offer ``accepts_parent_identity``; otherwise the one recorded identity must match.
    """
    accepts = getattr(child, "accepts_parent_identity", None)
    if accepts is not None:
        return bool(accepts(identity))
    return identity == cast(Differencing, child).parent_identity


def find_parent(child_path: Path, candidates: list[Path]) -> Path:
    """The first candidate that exists; a missing parent is named as the child recorded it.

    :raises ParentError: when no candidate exists.
    """
    for c in candidates:
        if c.is_file():
            return c
    if not candidates:
        raise ParentError(f"{child_path}: differencing disk names no parent")
    looked = ", ".join(str(c) for c in candidates)
    raise ParentError(f"{child_path}: parent not found: {candidates[0].name} (looked in {looked})")


def format_for_name(path: Path) -> ImageFormat | None:
    """The format a new file gets from its extension; None when the extension means nothing."""
    suffix = path.suffix.lower()
    if suffix in (".img", ".raw"):
        return ImageFormat.RAW
    return _EXTENSIONS.get(suffix)
