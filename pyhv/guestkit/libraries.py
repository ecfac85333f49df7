"""The shared libraries a dynamically linked guest program needs, found in unpacked packages.

The host's own libraries never enter the guest: every soname is looked up in the trees that
``dpkg-deb -x`` unpacked, following symlinks *inside* each tree (an absolute link target means
the tree's root, not the host's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pyhv.errors import PyhvError
from pyhv.guestkit import elf

LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")
_MAX_LINKS = 40


class MissingLibrary(PyhvError):
    """No unpacked package has ``soname``; the package ``needed_by`` depends on may have it."""

    def __init__(self, soname: str, needed_by: str) -> None:
        super().__init__(f"shared library {soname} (needed by package {needed_by}) not found")
        self.soname = soname
        self.needed_by = needed_by


@dataclass(frozen=True)
class Found:
    """A file for the guest: where it goes (``guest_path``, relative) and where it is now."""

    guest_path: str
    source: Path
    owner: str


def resolve_in_tree(root: Path, rel: str) -> Path | None:
    """The regular file ``rel`` names inside ``root``, symlinks followed within the tree."""
    parts = list(PurePosixPath(rel.lstrip("/")).parts)
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > _MAX_LINKS:
                return None
            target = PurePosixPath(str(candidate.readlink()))
            parts = list(target.parts[1:] if target.is_absolute() else target.parts) + parts
            if target.is_absolute():
                current = root
            continue
        if not candidate.exists():
            return None
        current = candidate
    return current if current.is_file() else None


def find_library(trees: Mapping[str, Path], soname: str) -> Found | None:
    for owner, root in trees.items():
        for libdir in LIBRARY_DIRS:
            source = resolve_in_tree(root, f"{libdir}/{soname}")
            if source is not None:
                return Found(f"{libdir}/{soname}", source, owner)
    return None


def closure(
    programs: list[Found],
    trees: Mapping[str, Path],
    read: Callable[[Path], bytes] = Path.read_bytes,
) -> list[Found]:
    """The dynamic loader and every library ``programs`` need, transitively, each once.

    :raise MissingLibrary: naming the package whose file needs the missing soname.
    """
    result: dict[str, Found] = {}
    todo = list(programs)
    while todo:
        item = todo.pop(0)
        data = read(item.source)
        interp = elf.interpreter(data)
        if interp is not None and interp.lstrip("/") not in result:
            found = _find_interpreter(trees, interp)
            if found is None:
                raise MissingLibrary(interp, item.owner)
            result[found.guest_path] = found
        for soname in elf.needed(data):
            if any(Path(path).name == soname for path in result):
                continue
            lib = find_library(trees, soname)
            if lib is None:
                raise MissingLibrary(soname, item.owner)
            result[lib.guest_path] = lib
            todo.append(lib)
    return list(result.values())


def _find_interpreter(trees: Mapping[str, Path], path: str) -> Found | None:
    for owner, root in trees.items():
        source = resolve_in_tree(root, path)
        if source is not None:
            return Found(path.lstrip("/"), source, owner)
    return None
