"""``state/memory.json``: whether a saved state resumes Paused or Running (``{"state": "Paused"}``).

A start from Saved must bring the VM back as it was, and the worker stops a running guest
before it writes its memory, so the memory file alone cannot tell. The worker writes this file
when it saves a VM and reads it when it restores one; pyhvd's checkpoint code writes it wherever
a checkpoint's memory becomes a saved state (applied, or exported for Import-VM, which writes
it again beside the imported memory). Both layers share the one format, so it lives below them
both (:mod:`pyhv.paths` says where the file lies). It is written before the memory counts as a
saved state: a saved state never lacks its run state.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyhv.atomicfile import write_atomic
from pyhv.model import VmState


def write_run_state(path: Path, *, paused: bool) -> None:
    """Record that the saved state beside ``path`` resumes Paused (else Running)."""
    state = VmState.PAUSED if paused else VmState.RUNNING
    write_atomic(path, json.dumps({"state": str(state)}).encode())


def saved_paused(path: Path) -> bool:
    """Whether the saved state beside ``path`` resumes Paused. A missing or unreadable file
    means Running: saved states from before the file existed resumed Running."""
    try:
        return bool(json.loads(path.read_bytes())["state"] == VmState.PAUSED)
    except (OSError, ValueError, KeyError, TypeError):
        return False
