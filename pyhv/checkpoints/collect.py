"""Which image files a checkpoint tree no longer needs, and how to fold them away (pure).

An image is *referenced* when a checkpoint froze it or the VM's configuration uses it. An
unreferenced image nobody reads through is deleted (unless pyhv did not make it). An
unreferenced image read by exactly one file that is itself a leaf takes that leaf's data by a
merge, and takes over its references too: that is how a removed checkpoint's differencing data
ends up where it is still needed. An unreferenced image read by several files stays, as their
shared parent; it is folded later, once only one reader is left.

Merges only ever write into an image whose single reader is the one being merged, so no other
file's view changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyhv.checkpoints.steps import Delete, Merge


@dataclass(frozen=True)
class Collected:
    steps: list[Merge | Delete]
    images: dict[str, str | None]
    moved: dict[str, str]  # merged-away path -> the image that now holds its data


def collect(
    images: dict[str, str | None], referenced: set[str], kept: frozenset[str] = frozenset()
) -> Collected:
    """Steps that leave only needed images, in an order where every step is safe on its own.

    ``kept`` (among ``referenced``) are files that must stay as they are, under their own
    name: disks the user detached (:func:`detached`). Merging one into its parent would
    keep its data but take away the file the user was told stays.
    """
    images = dict(images)
    refs = set(referenced)
    steps: list[Merge | Delete] = []
    moved: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        readers = _readers(images)
        for path in sorted(images):
            if path in refs:
                continue
            kids = readers.get(path, [])
            if not kids:
                if images[path] is not None:
                    steps.append(Delete(path=path))
                del images[path]
            elif len(kids) == 1 and _mergeable(kids[0], refs, kept, readers):
                child = kids[0]
                steps.append(Merge(child=child, into=path))
                del images[child]
                refs = (refs - {child}) | {path}
                moved = {k: (path if v == child else v) for k, v in moved.items()}
                moved[child] = path
            else:
                continue
            changed = True
            break
    return Collected(steps, images, moved)


def detached(images: dict[str, str | None], referenced: set[str]) -> set[str]:
    """Leaves nobody references *before* an operation: after a collection none is left, so
    these are disks the user took out of the VM's configuration; they are kept."""
    readers = _readers(images)
    return {p for p in images if p not in referenced and not readers.get(p)}


def _mergeable(
    child: str, refs: set[str], kept: frozenset[str], readers: dict[str, list[str]]
) -> bool:
    """Whether ``child``, the single reader of an unreferenced image, may be merged into it."""
    return child in refs and child not in kept and not readers.get(child)


def _readers(images: dict[str, str | None]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path, parent in images.items():
        if parent is not None:
            out.setdefault(parent, []).append(path)
    return out
