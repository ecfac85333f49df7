"""Test-VHD: check every file of a differencing chain, and the links between them.

Each file's own structures are the format's business (``FORMAT.check``); this module adds what
only the chain can tell: a parent that is missing, one that is not the file the child was made
from, a loop, a parent larger than its child. It keeps going after a problem wherever the
next file can still be found, so one run lists everything.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import cast

from pyhv.errors import ParentError, PyhvError
from pyhv.storage import detect_format, driver_for, open_layer
from pyhv.storage.chains import find_parent, identity_matches
from pyhv.storage.formats import Differencing
from pyhv.storage.image import DiskImage, DiskType
from pyhv.storage.locks import lock_image

REPAIRED = "(repaired)"  # how a format marks a problem its repair fixed


def unresolved(problems: list[str]) -> list[str]:
    """The problems a repair did not fix (a format may list fixed ones, marked ``REPAIRED``)."""
    return [p for p in problems if not p.endswith(REPAIRED)]


def check_chain(path: str | os.PathLike[str], repair: bool = False) -> list[str]:
    """One line per problem in ``path`` and all its ancestors; [] when the chain is sound.

    With ``repair`` each format fixes what it can in its own files (parents included);
    the lines left are what could not be fixed.
    """
    problems: list[str] = []
    seen: set[str] = set()
    current: Path | None = Path(path)
    child: DiskImage | None = None
    with ExitStack() as stack:
        while current is not None:
            real = os.path.realpath(current)
            if real in seen:
                problems.append(
                    f"{child.path if child else current}: parent loop: {current} "
                    "is already in the chain"
                )
                break
            seen.add(real)
            layer = _open_checked(current, repair, problems)
            if layer is None:
                break
            stack.enter_context(layer)
            if child is not None:
                problems.extend(link_problems(child, layer))
            current = _next_parent(layer, problems)
            child = layer
    return problems


def _open_checked(path: Path, repair: bool, problems: list[str]) -> DiskImage | None:
    """The format's own check, then the file opened alone; None when it cannot be opened."""
    try:
        driver = driver_for(detect_format(path))  # first: it refuses what is no file to open
        # A repair writes the file behind the image layer's back: lock it like a writable open.
        held = lock_image(path, exclusive=True) if repair else None
        try:
            found = driver.check(path, repair)
        finally:
            if held is not None:
                held.release()
        problems.extend(_with_path(path, line) for line in found)
        return open_layer(path)
    except PyhvError as e:
        line = _with_path(path, str(e))
        if line not in problems:
            problems.append(line)
        return None


def _with_path(path: Path, line: str) -> str:
    return line if str(path) in line else f"{path}: {line}"


def _next_parent(layer: DiskImage, problems: list[str]) -> Path | None:
    if layer.disk_type != DiskType.DIFFERENCING:
        return None
    try:
        return find_parent(layer.path, cast(Differencing, layer).parent_candidates())
    except ParentError as e:
        problems.append(str(e))
        return None


def link_problems(child: DiskImage, parent: DiskImage) -> list[str]:
    """What is wrong with ``parent`` as the parent of ``child`` (pure: uses loaded metadata)."""
    out: list[str] = []
    expected = cast(Differencing, child).parent_identity
    if not identity_matches(child, parent.identity):
        out.append(
            f"{child.path}: parent {parent.path} has identity {parent.identity.hex()}, but the "
            f"child was made from {expected.hex()} (wrong or modified parent)"
        )
    if parent.size > child.size:
        out.append(
            f"{child.path}: parent {parent.path} is larger ({parent.size} bytes) than the child "
            f"({child.size} bytes)"
        )
    return out
