"""What a VM is doing now (state, written by its worker) and how much it uses (statistics)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class VmState(StrEnum):
    """The states Hyper-V shows; Critical is a flag on the status, not a state."""

    OFF = "Off"
    STARTING = "Starting"
    RUNNING = "Running"
    PAUSED = "Paused"
    SAVING = "Saving"
    SAVED = "Saved"
    STOPPING = "Stopping"


#: The states in which the VM's QEMU runs and its disks are served, so statistics, device changes
#: and checkpoints go through its worker: Paused stops only the vCPUs. In every other state no
#: QEMU holds the disks (Off, Saved) or one is on its way up or down.
LIVE_STATES = (VmState.RUNNING, VmState.PAUSED)


def _now() -> datetime:
    return datetime.now(UTC)


class VmStatus(BaseModel):
    """Contents of ``status.json``; ``reason`` says why the VM entered this state."""

    model_config = ConfigDict(extra="forbid")

    state: VmState = VmState.OFF
    critical: bool = False
    reason: str | None = None
    worker_pid: int | None = None
    qemu_pid: int | None = None
    large_pages: bool | None = None  # the running QEMU's RAM is on 2 MiB pages
    since: datetime = Field(default_factory=_now)

    @property
    def display_state(self) -> str:
        """``Off-Critical`` style, as Hyper-V Manager shows it."""
        return f"{self.state}-Critical" if self.critical else str(self.state)


class DiskStats(BaseModel):
    """Per-disk I/O counters kept by the storage provider."""

    model_config = ConfigDict(extra="forbid")

    read_ops: int = 0
    write_ops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    flush_ops: int = 0
    read_latency_ms_avg: float | None = None
    write_latency_ms_avg: float | None = None


class VmStats(BaseModel):
    """A statistics sample of a running VM; ``disks`` is keyed by ``"<controller>:<slot>"``."""

    model_config = ConfigDict(extra="forbid")

    cpu_time_s: float = 0.0
    cpu_time_per_vcpu_s: list[float] = Field(default_factory=list)
    memory_assigned_mib: int = 0
    memory_used_mib: int | None = None
    uptime_s: float = 0.0
    disks: dict[str, DiskStats] = Field(default_factory=dict)
