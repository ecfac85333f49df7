"""The running VM's side of checkpoint operations: its worker swaps the disks and saves the
memory (``checkpoint_swap``), says which files it serves (``disk_images``), and is turned
off before a checkpoint is applied and started again to restore one's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyhv.checkpoints.steps import SwapRunning
from pyhv.model import VmConfig, VmState
from pyhv.paths import HomePaths
from pyhv.worker.local import LocalHost

#: A 512 MiB guest's memory is written in about a second here; a big guest on slow storage
#: takes much longer, and the op answers only once the file is complete.
SWAP_TIMEOUT_S = 1800.0
LIVE = (VmState.RUNNING, VmState.PAUSED)


@dataclass(frozen=True)
class SwapResult:
    paused_ms: float
    total_ms: float
    memory_error: str | None


class OnlineVm:
    """One VM as checkpoints drive it through its worker."""

    def __init__(self, paths: HomePaths, config: VmConfig) -> None:
        self.host = LocalHost(paths)
        self.config = config

    def swap(self, step: SwapRunning) -> SwapResult:
        """Take the checkpoint in the worker.

        :raises StateError: the freeze failed (no working guest agent) or the VM stopped.
        :raises PyhvError: the worker could not swap; it undid what it had done.
        """
        args = {"disks": step.disks, "memory_path": step.memory, "freeze": step.freeze}
        reply = self.host.client(self.config).call("checkpoint_swap", args, timeout=SWAP_TIMEOUT_S)
        return SwapResult(
            float(reply["paused_ms"]), float(reply["total_ms"]), reply.get("memory_error")
        )

    def swapped(self, step: SwapRunning) -> bool:
        """Whether the swap of ``step`` happened: a live worker serves its children; after the
        VM stopped, the children exist (the worker deletes them when a swap fails)."""
        if self.host.status(self.config).state in LIVE:
            served = self.host.client(self.config).call("disk_images")
            return all(served.get(key) == path for key, path in step.disks.items())
        return all(Path(path).exists() for path in step.disks.values())

    def turn_off(self) -> None:
        """Running, Paused: turn off; Saved: discard the saved state (Hyper-V's Turn Off)."""
        if self.host.status(self.config).state != VmState.OFF:
            self.host.turn_off(self.config.name)

    def restore(self) -> None:
        """Start the VM from its saved state (a checkpoint's memory)."""
        self.host.start(self.config.name)
