"""The steps a checkpoint operation is made of, as journaled values (pure, JSON round-trip).

Steps before the journal's commit index only create new files, so undoing them is deleting
those files; steps from the commit index on are idempotent, so they can always be run again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateDiff(_Step):
    """A new differencing image at ``path`` on ``parent`` (a new file: undo deletes it)."""

    kind: Literal["create_diff"] = "create_diff"
    path: str
    parent: str


class CopyFile(_Step):
    """Copy a checkpoint's memory state to the VM's saved state (a new file: undo deletes it)."""

    kind: Literal["copy_file"] = "copy_file"
    src: str
    dst: str


class WriteTree(_Step):
    """Replace ``tree.json`` with the journal's new tree."""

    kind: Literal["write_tree"] = "write_tree"


class WriteConfig(_Step):
    """Replace ``vm.json`` with the journal's new configuration."""

    kind: Literal["write_config"] = "write_config"


class Merge(_Step):
    """Fold ``child`` into its parent ``into``; done when ``child`` is gone."""

    kind: Literal["merge"] = "merge"
    child: str
    into: str


class Delete(_Step):
    """Remove a file nobody reads any more."""

    kind: Literal["delete"] = "delete"
    path: str


Step = Annotated[
    CreateDiff | CopyFile | WriteTree | WriteConfig | Merge | Delete, Field(discriminator="kind")
]


def created_file(step: Step) -> str | None:
    """The new file a pre-commit step makes, which is what undoing it removes."""
    if isinstance(step, CreateDiff):
        return step.path
    if isinstance(step, CopyFile):
        return step.dst
    return None
