"""``vms/<id>/checkpoints/tree.json``: the checkpoint tree on disk, replaced atomically."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from pyhv.atomicfile import write_atomic
from pyhv.checkpoints.tree import CheckpointTree
from pyhv.errors import ConfigError

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
