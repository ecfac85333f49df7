"""Checkpoints: a tree of VM states (disks, optionally memory) to go back to, remove, export.

``tree`` and ``planner`` decide (pure); ``manager`` carries plans out through a journal that
``recovery`` finishes or undoes after a crash. ``CheckpointManager`` is loaded on first use,
so the client and CLI, which need only the tree's types, start without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyhv.checkpoints.tree import Checkpoint, CheckpointTree, CheckpointType, draw

if TYPE_CHECKING:
    from pyhv.checkpoints.manager import CheckpointManager

__all__ = ["Checkpoint", "CheckpointManager", "CheckpointTree", "CheckpointType", "draw"]


def __getattr__(name: str) -> Any:
    if name == "CheckpointManager":
        from pyhv.checkpoints.manager import CheckpointManager

        return CheckpointManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
