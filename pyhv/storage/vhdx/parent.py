"""Parent locator paths and linkage of differencing disks. Pure (no file access).

# Ref: [MS-VHDX] §2.6.2.6.3. Keys pyhv writes: ``parent_linkage`` (the parent's identity as a
braced lower-case GUID, see :func:`format_linkage`), ``relative_path`` (Windows form, ``\\``
separators, relative to the child's folder) and ``absolute_win32_path``, which pyhv fills with
the parent's absolute POSIX path: readers try ``relative_path`` first (the spec's order), and
Linux readers (pyhv, libvhdi, dissect) can use the absolute one as it is.

A VHDX child of a VHD parent stores the VHD's UniqueId in ``parent_linkage``, turned into text
the same way as a DataWriteGuid (``uuid.UUID(bytes_le=identity)``), so the text round-trips to
the parent's ``identity`` bytes whatever the parent's format. [MS-VHDX] says nothing about VHD
parents; libvhdi reads a VHD UniqueId as a big-endian GUID, so it reports a mismatch for such a
child. What Hyper-V writes in this case is unverified.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath

from pyhv.storage.vhdx.metadata import format_linkage, parse_linkage

_DRIVE = re.compile(r"^(?:\\\\\?\\)?([A-Za-z]):\\(.*)$")
_VOLUME = re.compile(r"^\\\\\?\\Volume\{[0-9A-Fa-f-]+\}\\(.*)$")


def linkage_identity(locator: dict[str, str], key: str = "parent_linkage") -> bytes | None:
    guid = parse_linkage(locator.get(key, ""))
    return guid.bytes_le if guid is not None else None


def build_locator(parent_identity: bytes, parent_path: Path, child_path: Path) -> dict[str, str]:
    """Locator entries for a child at ``child_path`` of the parent at ``parent_path``."""
    parent_abs = os.path.abspath(parent_path)
    rel = os.path.relpath(parent_abs, os.path.dirname(os.path.abspath(child_path)))
    rel_win = str(PureWindowsPath(*PurePosixPath(rel).parts))
    if not rel_win.startswith(".."):
        rel_win = ".\\" + rel_win
    return {
        "parent_linkage": format_linkage(uuid.UUID(bytes_le=parent_identity[:16].ljust(16, b"\0"))),
        "relative_path": rel_win,
        "absolute_win32_path": parent_abs,
    }


def candidate_paths(locator: dict[str, str], child_path: Path) -> list[Path]:
    """Where to look for the parent, in the spec's order (relative, volume, absolute), then the
    parent's file name next to the child (a moved pair of files keeps working)."""
    child_dir = Path(os.path.abspath(child_path)).parent
    out: list[Path] = []
    rel = locator.get("relative_path")
    if rel:
        out.append(child_dir / _posix_relative(rel))
    vol = _VOLUME.match(locator.get("volume_path", ""))
    if vol:  # a volume GUID has no Linux meaning; its path part may still match the child's
        out.append(child_dir / PureWindowsPath(vol.group(1)).name)
    absolute = locator.get("absolute_win32_path", "")
    if absolute.startswith("/"):
        out.append(Path(absolute))
    else:
        drive = _DRIVE.match(absolute)
        if drive:
            rest = PurePosixPath(*PureWindowsPath(drive.group(2)).parts)
            out.append(Path("/mnt") / drive.group(1).lower() / rest)
    for value in (rel, absolute):
        if value:
            out.append(child_dir / PureWindowsPath(value.replace("/", "\\")).name)
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen and p.name:
            seen.add(p)
            unique.append(p)
    return unique


def _posix_relative(rel: str) -> str:
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)
