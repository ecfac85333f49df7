"""Checkpoints: a tree of VM states (disks, optionally memory) to go back to, remove, export.

``tree`` and ``planner`` decide (pure); ``manager`` carries plans out through a journal that
``recovery`` finishes or undoes after a crash.
"""

from pyhv.checkpoints.manager import CheckpointManager
from pyhv.checkpoints.tree import Checkpoint, CheckpointTree, CheckpointType, draw

__all__ = ["Checkpoint", "CheckpointManager", "CheckpointTree", "CheckpointType", "draw"]
