"""A VM's checkpoint tree and the image files it hangs on: pure values, no I/O.

Two structures live side by side because they stop matching once checkpoints are removed:

* the **checkpoints**, each with its parent, the image path of every disk it froze, an
  optional memory-state file and the VM configuration at that moment, plus ``current``, the
  checkpoint the VM's current differencing disks hang from (Hyper-V's "Now" marker);
* the **images**: every file some checkpoint or the current state reads, with the parent pyhv
  made it from (``None`` for a disk pyhv did not make: it is never deleted). A removed
  checkpoint's image stays here as long as another file still reads through it.

Every change returns a new tree; the planner computes the next tree before anything is touched.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pyhv.errors import ConflictError, NotFoundError, UsageError
from pyhv.model import VmState

MAX_NAME_LENGTH = 100
NOW_LABEL = "Now"


class CheckpointType(StrEnum):
    """``production`` asks the guest agent to freeze file systems; of a VM that is Off there
    is nothing to freeze, so it is a disks-only checkpoint like ``standard`` (as in Hyper-V)."""

    STANDARD = "standard"
    PRODUCTION = "production"


class Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    parent: str | None
    created: datetime
    type: CheckpointType = CheckpointType.STANDARD
    disks: dict[str, str]  # "controller:slot" -> the image this checkpoint froze
    memory_state: str | None = None
    vm_state: VmState = VmState.OFF  # what applying it with its memory brings back
    # Its memory resumes Paused: taken Paused, or of a VM saved while Paused.
    resumes_paused: bool = False
    paused_ms: float | None = None  # how long the running guest was stopped to take it
    config: dict[str, Any]  # the VmConfig as JSON, as it was


class CheckpointTree(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    current: str | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    images: dict[str, str | None] = Field(default_factory=dict)  # path -> parent pyhv made it from

    # -- lookups ------------------------------------------------------------------------------
    def get(self, checkpoint_id: str) -> Checkpoint:
        for c in self.checkpoints:
            if c.id == checkpoint_id:
                return c
        raise NotFoundError(f"no checkpoint with id {checkpoint_id}")

    def find(self, name_or_id: str, vm_name: str) -> Checkpoint:
        """The checkpoint with this id, else with this name. An id wins: the CLI resolves a
        name and then sends the id, which must reach that checkpoint even when an older one
        is named like it (names taken before that was refused).

        :raises NotFoundError: naming the checkpoints there are.
        """
        for c in self.checkpoints:
            if c.id == name_or_id:
                return c
        for c in self.checkpoints:
            if c.name == name_or_id:
                return c
        names = ", ".join(repr(c.name) for c in self.checkpoints) or "none"
        raise NotFoundError(
            f"VM '{vm_name}' has no checkpoint named {name_or_id!r} (its checkpoints: {names})"
        )

    def children(self, checkpoint_id: str | None) -> list[Checkpoint]:
        return sorted(
            (c for c in self.checkpoints if c.parent == checkpoint_id), key=lambda c: c.created
        )

    def subtree(self, checkpoint_id: str) -> list[Checkpoint]:
        """The checkpoint and everything below it, parents before children."""
        out = [self.get(checkpoint_id)]
        for c in out:
            out.extend(self.children(c.id))
        return out

    def referenced_images(self) -> set[str]:
        return {path for c in self.checkpoints for path in c.disks.values()}

    # -- changes ------------------------------------------------------------------------------
    def with_checkpoint(
        self, node: Checkpoint, new_images: dict[str, str | None]
    ) -> CheckpointTree:
        """Add ``node`` as the new current position, registering the files it created."""
        self._check_free(node.name, node.id)
        images = {**self.images, **{p: None for p in node.disks.values() if p not in self.images}}
        return self.model_copy(
            update={
                "checkpoints": (*self.checkpoints, node),
                "current": node.id,
                "images": {**images, **new_images},
            }
        )

    def replaced(self, node: Checkpoint) -> CheckpointTree:
        """The same tree with the checkpoint of ``node.id`` replaced by ``node``."""
        nodes = tuple(node if c.id == node.id else c for c in self.checkpoints)
        return self.model_copy(update={"checkpoints": nodes})

    def renamed(self, checkpoint_id: str, new_name: str) -> CheckpointTree:
        self._check_free(new_name, checkpoint_id)
        return self.replaced(self.get(checkpoint_id).model_copy(update={"name": new_name}))

    def _check_free(self, name: str, checkpoint_id: str) -> None:
        """A name no other checkpoint has, nor as its id: a name equal to another checkpoint's
        id would make lookups by that id ambiguous.

        :raises UsageError: see :func:`check_name`.
        :raises ConflictError: the name is taken.
        """
        check_name(name)
        for c in self.checkpoints:
            if c.id != checkpoint_id and name in (c.name, c.id):
                what = "named" if c.name == name else "with the id"
                raise ConflictError(f"a checkpoint {what} {name!r} exists: choose another name")

    def without(self, checkpoint_id: str, subtree: bool) -> CheckpointTree:
        """Drop a checkpoint (its children move up to its parent) or its whole subtree; the
        current position moves to the nearest ancestor that stays. Images are left to
        :func:`pyhv.checkpoints.collect.collect`."""
        node = self.get(checkpoint_id)
        gone = {c.id for c in self.subtree(checkpoint_id)} if subtree else {checkpoint_id}
        kept = tuple(
            c.model_copy(update={"parent": node.parent}) if c.parent == checkpoint_id else c
            for c in self.checkpoints
            if c.id not in gone
        )
        current = self.current
        if current in gone:
            current = node.parent
        return self.model_copy(update={"checkpoints": kept, "current": current})

    def with_images(self, images: dict[str, str | None], moved: dict[str, str]) -> CheckpointTree:
        """Replace the image map; checkpoints whose image was merged away now name its heir."""
        nodes = tuple(
            c.model_copy(update={"disks": {k: moved.get(p, p) for k, p in c.disks.items()}})
            for c in self.checkpoints
        )
        return self.model_copy(update={"checkpoints": nodes, "images": images})

    def moved_to(self, checkpoint_id: str | None) -> CheckpointTree:
        return self.model_copy(update={"current": checkpoint_id})


def check_name(name: str) -> str:
    """:raises UsageError: an empty, overlong or multi-line checkpoint name."""
    if not name.strip():
        raise UsageError("a checkpoint name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"checkpoint name is {len(name)} characters, over {MAX_NAME_LENGTH}")
    if not name.isprintable():
        raise UsageError(f"checkpoint name {name!r} must not contain control characters")
    return name


def draw(tree: CheckpointTree) -> list[str]:
    """The tree as text lines, oldest first, with "Now" under the current position."""
    lines: list[str] = []

    def labels(parent: str | None) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = [(c.name, c.id) for c in tree.children(parent)]
        if tree.current == parent:
            out.append((NOW_LABEL, None))
        return out

    def walk(parent: str | None, prefix: str) -> None:
        entries = labels(parent)
        for i, (label, node_id) in enumerate(entries):
            last = i == len(entries) - 1
            if parent is None:  # roots start at the margin
                lines.append(label)
                inner = ""
            else:
                lines.append(f"{prefix}{'└── ' if last else '├── '}{label}")
                inner = prefix + ("    " if last else "│   ")
            if node_id is not None:
                walk(node_id, inner)

    walk(None, "")
    return lines
