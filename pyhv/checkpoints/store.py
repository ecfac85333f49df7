"""``vms/<id>/checkpoints/tree.json``: the checkpoint tree on disk, replaced atomically, and
the memory files beside it."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from pyhv.atomicfile import write_atomic
from pyhv.checkpoints.tree import Checkpoint, CheckpointTree
from pyhv.errors import ConfigError, StateError

TREE_FILE = "tree.json"
JOURNAL_FILE = "journal.json"
LOCK_FILE = ".lock"


def load_tree(path: Path) -> CheckpointTree:
    """The stored tree; an empty one when the VM has never had a checkpoint.

    :raises ConfigError: the file is damaged.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return CheckpointTree()
    try:
        return CheckpointTree.model_validate_json(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: damaged checkpoint tree ({e.errors()[0]['msg']})") from None


def save_tree(path: Path, tree: CheckpointTree) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, tree.model_dump_json(indent=1).encode() + b"\n")


def check_memory(node: Checkpoint) -> None:
    """Refuse to apply or export a checkpoint whose memory file is gone, before anything
    starts: an apply journaled with it would stop the VM and then fail again at every
    recovery, leaving every checkpoint command of the VM failing.

    :raises StateError: the checkpoint has memory, but its file is missing.
    """
    if node.memory_state is not None and not Path(node.memory_state).is_file():
        raise StateError(
            f"checkpoint '{node.name}' lost its memory file {node.memory_state}: put it back, "
            "or remove the checkpoint"
        )
