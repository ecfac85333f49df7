"""The run state a memory file comes back in: beside a VM's saved state, ``state/memory.json``
records it (``{"state": "Paused"}``; the worker reads it when it restores). A checkpoint
keeps it in its node (``resumes_paused``) and writes it again wherever its memory becomes a
saved state: when it is applied, and in an export, which Import-VM takes as a Saved VM."""

from __future__ import annotations

import json
from pathlib import Path

from pyhv.model import VmState


def info_bytes(paused: bool) -> bytes:
    """The content of ``memory.json`` for a memory that resumes Paused or Running."""
    return json.dumps({"state": str(VmState.PAUSED if paused else VmState.RUNNING)}).encode()


def saved_paused(info: Path) -> bool:
    """Whether the saved state beside ``info`` resumes Paused (no file: Running, as the
    worker reads it)."""
    try:
        return bool(json.loads(info.read_bytes())["state"] == VmState.PAUSED)
    except (OSError, ValueError, KeyError, TypeError):
        return False
