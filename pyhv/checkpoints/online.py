"""The running VM's side of checkpoint operations: its worker swaps the disks and saves the
memory (``checkpoint_swap``), merges the disk it runs on into its parent (``merge_running``),
says which files it serves (``disk_images``), and applies a checkpoint's memory in a new
QEMU (``checkpoint_apply``); otherwise it is turned off before a checkpoint is applied and
started again to restore one's memory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from pyhv.checkpoints.steps import ApplyRunning, Merge, SwapRunning
from pyhv.errors import PyhvError, StateError
from pyhv.model import VmConfig, VmState
from pyhv.model.status import LIVE_STATES
from pyhv.paths import HomePaths
from pyhv.storage.operations import check_chain
from pyhv.worker.local import LocalHost

#: A 512 MiB guest's memory is written in about a second here; a big guest on slow storage
#: takes much longer, and the op answers only once the file is complete.
SWAP_TIMEOUT_S = 1800.0
MERGE_TIMEOUT_S = 24 * 3600.0
APPLY_TIMEOUT_S = 600.0  # a new QEMU loads the memory file: seconds for gigabytes
PREPARE_TIMEOUT_S = 30.0  # the worker starts a QEMU process and answers


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
        """Whether the checkpoint of ``step`` stands: a live worker serves its children.
        After the VM stopped, the children exist and are sound (the worker deletes them
        when a swap fails). A worker killed after it made them while the guest ran, but
        before the swap, leaves children that read through to the images the guest wrote
        until it died: the checkpoint then stands for that instant, unless a parent took a
        new identity since (a first write after it was opened) and its child no longer fits.
        """
        if self.host.status(self.config).state in LIVE_STATES:
            served = self.host.client(self.config).call("disk_images")
            return all(served.get(key) == path for key, path in step.disks.items())
        return all(Path(p).exists() and not check_chain(p) for p in step.disks.values())

    def merge(self, step: Merge) -> bool:
        """Merge in the worker, while the guest runs, when it serves ``step.child``; False
        when the VM does not run on that file (the caller merges offline)."""
        if self.host.status(self.config).state not in LIVE_STATES:
            return False
        client = self.host.client(self.config)
        served = client.call("disk_images")
        key = next((k for k, path in served.items() if path == step.child), None)
        if key is None:
            return False
        args = {"disk": key, "into": step.into}
        client.call("merge_running", args, timeout=MERGE_TIMEOUT_S)
        return True

    def apply(self, step: ApplyRunning) -> bool:
        """Apply in the worker: the VM runs on from the checkpoint's memory. False when the
        VM is not live (any more): its worker died, or it ended Off when it could not load
        the memory; the caller then makes the memory its saved state.

        :raises StateError: the VM is between states (starting, stopping): try again.
        :raises PyhvError: the worker refused and the VM runs on as before.
        """
        state = self.host.status(self.config).state
        if state in (VmState.OFF, VmState.SAVED):
            return False
        if state not in LIVE_STATES:
            raise StateError(
                f"VM '{self.config.name}' is {state}: applying its checkpoint cannot go on "
                "now; run `pyhv checkpoint list` to finish it once it has settled"
            )
        args = {
            "apply_id": step.apply_id,
            "disks": step.disks,
            "memory_path": step.memory,
            "paused": step.paused,
        }
        try:
            self.host.client(self.config).call("checkpoint_apply", args, timeout=APPLY_TIMEOUT_S)
        except PyhvError:
            if self.host.status(self.config).state in LIVE_STATES:
                raise
            return False
        return True

    def prepare_apply(self, apply_id: str) -> None:
        """Have the worker start the new QEMU of the apply ``apply_id`` while the caller
        makes the new disks, so that it is ready when the apply comes. Only saves time:
        when the worker cannot, the apply starts its QEMU itself."""
        with contextlib.suppress(PyhvError):
            args = {"apply_id": apply_id}
            client = self.host.client(self.config)
            client.call("checkpoint_apply_prepare", args, timeout=PREPARE_TIMEOUT_S)

    def turn_off(self) -> None:
        """Running, Paused: turn off; Saved: discard the saved state (Hyper-V's Turn Off)."""
        if self.host.status(self.config).state != VmState.OFF:
            self.host.turn_off(self.config.name)

    def restore(self) -> None:
        """Start the VM from its saved state (a checkpoint's memory)."""
        self.host.start(self.config.name)
