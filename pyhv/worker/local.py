"""Driving VMs on this host directly through their workers (until pyhvd does it).

Each method resolves the VM, checks the request against the state machine *before* touching
anything, so an illegal request (pause an Off VM) fails with the state machine's own words.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyhv.errors import StateError
from pyhv.guestkit import READY_LINE
from pyhv.inventory import Inventory
from pyhv.model import VmConfig, VmState, VmStats, VmStatus
from pyhv.model.status import LIVE_STATES
from pyhv.paths import HomePaths
from pyhv.worker.agent import ExecResult
from pyhv.worker.client import WorkerClient
from pyhv.worker.launcher import start_worker
from pyhv.worker.states import Action, next_status, transition
from pyhv.worker.status_file import current_status, write_status

SLACK_S = 15.0  # how much longer a client waits than the op it asked for


@dataclass(frozen=True)
class Sample:
    stats: VmStats
    cpu_percent: float


class LocalHost:
    def __init__(self, paths: HomePaths | None = None) -> None:
        self.paths = paths or HomePaths()
        self.inventory = Inventory(self.paths)

    def get(self, name: str) -> VmConfig:
        return self.inventory.get(name)

    def status(self, config: VmConfig) -> VmStatus:
        return current_status(self.paths, config.id)

    def client(self, config: VmConfig) -> WorkerClient:
        return WorkerClient(self.paths.run_dir(config.id) / "control.sock", config.name)

    def _check(self, config: VmConfig, action: Action) -> VmStatus:
        status = self.status(config)
        transition(status.state, action, config.name)
        return status

    def start(self, name: str, *, wait_ready_s: float | None = None) -> VmStatus:
        """Start-VM: boot, or restore when Saved; optionally wait for the guest's ready line."""
        config = self.get(name)
        status = self._check(config, Action.START)
        restore = status.state == VmState.SAVED
        client = start_worker(self.paths, config, restore=restore)
        # A restored guest printed its ready line before it was saved.
        if wait_ready_s is not None and not restore:
            args = {"text": READY_LINE, "timeout": wait_ready_s}
            if not client.call("wait_console", args, timeout=wait_ready_s + SLACK_S):
                raise StateError(
                    f"VM '{name}' runs but its guest printed no ready line in {wait_ready_s:g} s"
                )
        return self.status(config)

    def _op(
        self,
        name: str,
        action: Action,
        op: str,
        args: dict[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> VmStatus:
        config = self.get(name)
        self._check(config, action)
        self.client(config).call(op, args, timeout=timeout)
        return self.status(config)

    def shutdown(self, name: str, timeout_s: float = 60.0) -> VmStatus:
        return self._op(
            name, Action.SHUTDOWN, "shutdown", {"timeout": timeout_s}, timeout_s + SLACK_S
        )

    def turn_off(self, name: str) -> VmStatus:
        config = self.get(name)
        status = self._check(config, Action.TURN_OFF)
        if status.state == VmState.SAVED:
            return self._discard_saved_state(config, status)
        self.client(config).call("turn_off", timeout=SLACK_S + 30)
        return self.status(config)

    def _discard_saved_state(self, config: VmConfig, status: VmStatus) -> VmStatus:
        """Turning off a Saved VM throws its saved memory away, as Hyper-V does."""
        new = next_status(
            status,
            Action.TURN_OFF,
            vm_name=config.name,
            now=datetime.now(UTC),
            reason="saved state discarded",
        )
        write_status(self.paths.vm_status(config.id), new)
        self.paths.vm_saved_state(config.id).unlink(missing_ok=True)
        self.paths.vm_saved_state_info(config.id).unlink(missing_ok=True)
        return new

    def save(self, name: str) -> VmStatus:
        return self._op(name, Action.SAVE, "save", timeout=300.0)

    def pause(self, name: str) -> VmStatus:
        return self._op(name, Action.PAUSE, "pause")

    def resume(self, name: str) -> VmStatus:
        return self._op(name, Action.RESUME, "resume")

    def restart(self, name: str) -> VmStatus:
        return self._op(name, Action.RESET, "reset")

    def exec(self, name: str, argv: list[str], *, timeout_s: float = 60.0) -> ExecResult:
        """Run a command in the guest through its agent (PowerShell Direct's Invoke-Command)."""
        config = self.get(name)
        status = self.status(config)
        if status.state != VmState.RUNNING:
            raise StateError(f"cannot run a command in VM '{name}': it is {status.state}")
        reply = self.client(config).call(
            "exec", {"argv": argv, "timeout": timeout_s}, timeout=timeout_s + SLACK_S
        )
        return ExecResult(
            exit_code=int(reply["exit_code"]),
            stdout=base64.b64decode(reply["stdout"]),
            stderr=base64.b64decode(reply["stderr"]),
            signal=reply.get("signal"),
        )

    def sample(self, config: VmConfig) -> Sample | None:
        """Statistics of a running or paused VM; None when it has none to give."""
        if self.status(config).state not in LIVE_STATES:
            return None
        try:
            reply = self.client(config).call("stats", timeout=10.0)
        except StateError:
            return None
        return Sample(VmStats.model_validate(reply["stats"]), float(reply["cpu_percent"]))

    def remove(self, name: str) -> VmConfig:
        """Remove-VM: refused while it runs; its disks stay."""
        config = self.get(name)
        status = self.status(config)
        if status.state not in (VmState.OFF, VmState.SAVED):
            raise StateError(f"cannot remove VM '{name}': it is {status.state}; stop it first")
        return self.inventory.remove(config.id)
