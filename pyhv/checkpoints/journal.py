"""``checkpoints/journal.json``: the operation under way, written before it changes anything.

It holds the whole plan (steps, commit index, the new tree and configuration) and how many
steps are done, rewritten atomically after each step, and removed when the operation is over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pyhv.atomicfile import write_atomic
from pyhv.checkpoints.planner import Plan
from pyhv.checkpoints.steps import Step
from pyhv.checkpoints.tree import CheckpointTree
from pyhv.errors import ConfigError
from pyhv.model import VmConfig


class Journal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op: str
    steps: list[Step]
    commit: int
    done: int = 0
    tree: CheckpointTree
    config: dict[str, Any]
    online: bool = False  # every step is safe while the VM runs: recovery need not wait

    @classmethod
    def of(cls, plan: Plan, *, online: bool = False) -> Journal:
        return cls(
            op=plan.op,
            steps=plan.steps,
            commit=plan.commit,
            tree=plan.tree,
            config=plan.config.model_dump(mode="json"),
            online=online,
        )

    def vm_config(self) -> VmConfig:
        return VmConfig.model_validate(self.config)

    def advanced(self) -> Journal:
        return self.model_copy(update={"done": self.done + 1})

    def swapped(
        self, checkpoint_id: str, *, memory_saved: bool, paused_ms: float | None
    ) -> Journal:
        """The running VM's worker has swapped the disks (``SwapRunning``, the only step
        before the commit): the checkpoint stands, with its memory only if that was saved."""
        node = self.tree.get(checkpoint_id)
        update: dict[str, Any] = {"paused_ms": paused_ms}
        if not memory_saved:
            update["memory_state"] = None
        return self.model_copy(
            update={"done": self.commit, "tree": self.tree.replaced(node.model_copy(update=update))}
        )


def load_journal(path: Path) -> Journal | None:
    """:raises ConfigError: a journal that cannot be read (never guessed around)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Journal.model_validate_json(data)
    except ValidationError as e:
        raise ConfigError(
            f"{path}: unreadable checkpoint journal ({e.errors()[0]['msg']}); "
            "inspect it and remove it by hand"
        ) from None


def save_journal(path: Path, journal: Journal) -> None:
    write_atomic(path, journal.model_dump_json(indent=1).encode() + b"\n")


def clear_journal(path: Path) -> None:
    path.unlink(missing_ok=True)
