"""The steps a checkpoint operation is made of, as journaled values (pure, JSON round-trip).

Steps before the journal's commit index only create new files, so undoing them is deleting
those files; steps from the commit index on are idempotent, so they can always be run again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pyhv.worker.memory_save import partial_path


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateDiff(_Step):
    """A new differencing image at ``path`` on ``parent`` (a new file: undo deletes it)."""

    kind: Literal["create_diff"] = "create_diff"
    path: str
    parent: str


class CopyFile(_Step):
    """Give a memory file a second name (linked, or copied across file systems): a checkpoint's
    memory as the VM's saved state, or a Saved VM's state as a checkpoint's memory (a new
    file: undo deletes it)."""

    kind: Literal["copy_file"] = "copy_file"
    src: str
    dst: str


class SwapRunning(_Step):
    """The running VM's worker continues each disk in a new child (``"controller:slot"`` ->
    path) and saves the memory to ``memory`` at the same instant, freezing the guest's file
    systems around it with ``freeze`` (new files: undo deletes them; the manager runs this
    step itself and, after a crash, asks the worker whether the swap happened)."""

    kind: Literal["swap_running"] = "swap_running"
    disks: dict[str, str]
    memory: str | None = None
    freeze: bool = False


class WriteTree(_Step):
    """Replace ``tree.json`` with the journal's new tree."""

    kind: Literal["write_tree"] = "write_tree"


class WriteConfig(_Step):
    """Replace ``vm.json`` with the journal's new configuration."""

    kind: Literal["write_config"] = "write_config"


class MarkSaved(_Step):
    """Record the VM as Saved: its saved state is a checkpoint's memory, restored at start
    (Paused with ``paused``)."""

    kind: Literal["mark_saved"] = "mark_saved"
    paused: bool = False


class ApplyRunning(_Step):
    """The live VM's worker continues each disk (``"controller:slot"``) in its new child,
    made by the steps before the commit, and runs from ``memory`` in a new QEMU, Paused with
    ``paused``. A VM that is not live any more (its worker died) gets ``memory`` as its saved
    state instead and is Saved, as an offline apply leaves it. The worker remembers
    ``apply_id`` (unique per apply): running the step again once it is done does nothing."""

    kind: Literal["apply_running"] = "apply_running"
    apply_id: str
    disks: dict[str, str]
    memory: str
    paused: bool = False


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
    CreateDiff
    | CopyFile
    | SwapRunning
    | WriteTree
    | WriteConfig
    | MarkSaved
    | ApplyRunning
    | Merge
    | Delete,
    Field(discriminator="kind"),
]


def created_files(step: Step) -> list[str]:
    """The new files a pre-commit step makes, which is what undoing it removes (a memory
    file is written under a temporary name first: that one too)."""
    if isinstance(step, CreateDiff):
        return [step.path]
    if isinstance(step, CopyFile):
        return [step.dst]
    if isinstance(step, SwapRunning):
        memory = [] if step.memory is None else [step.memory, str(partial_path(Path(step.memory)))]
        return [*step.disks.values(), *memory]
    return []
