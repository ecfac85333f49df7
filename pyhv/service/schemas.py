"""The API's own request and response shapes, shared with ``pyhv.client``.

VM configurations, states and statistics are the models of :mod:`pyhv.model`; this module adds
only what exists because of the API: summaries for listings, a VM with its status and policy,
the partial update of PATCH, and the exec call.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from pyhv.checkpoints import CheckpointType
from pyhv.model import (
    AutomaticStartAction,
    AutomaticStopAction,
    DiskAttachment,
    DiskStats,
    DvdDrive,
    VmConfig,
    VmState,
    VmStats,
    VmStatus,
)
from pyhv.model.limits import MAX_QOS_LIMIT
from pyhv.service.jobs import Job
from pyhv.service.policies import ProcessorPolicy
from pyhv.storage import ImageInfo


class HostInfo(BaseModel):
    """``GET /host``: what pyhvd manages and what the host offers VMs."""

    version: str
    home: str
    cores: int
    memory_mib: int
    storage_roots: list[str]
    vms: int
    running: int


class VmSummary(BaseModel):
    """One row of ``GET /vms``, what Get-VM shows: cheap to list by the thousand."""

    id: str
    name: str
    state: VmState
    critical: bool
    reason: str | None
    since: datetime
    generation: int
    processor_count: int
    memory_startup_mib: int


class VmView(BaseModel):
    """``GET /vms/{id}``: the configuration, what the VM is doing, and its resource controls."""

    config: VmConfig
    status: VmStatus
    policy: ProcessorPolicy

    def summary(self) -> VmSummary:
        return summarize(self.config, self.status)


def summarize(config: VmConfig, status: VmStatus) -> VmSummary:
    return VmSummary(
        id=config.id,
        name=config.name,
        state=status.state,
        critical=status.critical,
        reason=status.reason,
        since=status.since,
        generation=config.generation,
        processor_count=config.processor_count,
        memory_startup_mib=config.memory_startup_mib,
    )


class VmCreate(VmConfig):
    """``POST /vms``: a configuration (``id`` optional) plus its processor resource controls."""

    policy: ProcessorPolicy = Field(default_factory=ProcessorPolicy)

    def split(self) -> tuple[VmConfig, ProcessorPolicy]:
        fields = self.model_dump(exclude={"policy"})
        return VmConfig.model_validate(fields), self.policy


class VmPatch(BaseModel):
    """``PATCH /vms/{id}``: Set-VM, Set-VMProcessor and Set-VMMemory in one; absent = unchanged.

    Processor count, startup memory and its huge pages change only while the VM is Off; the rest
    at any time.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    processor_count: int | None = None
    memory_startup_mib: int | None = None
    memory_hugepages: bool | None = None
    notes: str | None = None
    automatic_start_action: AutomaticStartAction | None = None
    automatic_stop_action: AutomaticStopAction | None = None
    policy: ProcessorPolicy | None = None

    def config_changes(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True, exclude={"policy"})


class VmSample(VmStats):
    """``GET /vms/{id}/stats``: the worker's statistics plus the CPU use since its last sample."""

    cpu_percent: float = 0.0


class ExecRequest(BaseModel):
    """``POST /vms/{id}/exec``: run a command in the guest through its agent."""

    model_config = ConfigDict(extra="forbid")

    argv: Annotated[list[str], Field(min_length=1)]
    stdin: str | None = None
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


class ExecOutput(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    signal: int | None = None


class ImportMode(StrEnum):
    """Import-VM's three ways: use the files where they are, copy them, copy with a new id."""

    REGISTER = "register"
    COPY = "copy"
    COPY_NEW_ID = "copy-new-id"


class ExportRequest(BaseModel):
    """``POST /vms/{id}/export``: a folder (inside a storage root) that does not exist yet."""

    model_config = ConfigDict(extra="forbid")

    path: str


class ImportRequest(BaseModel):
    """``POST /vms/import`` and ``/vms/import/report``: an export folder and how to take it.

    ``new_name`` imports the VM under that name instead of the exported one (VM names are
    unique here, unlike Hyper-V's); it follows the rules of a new VM's name.
    """

    model_config = ConfigDict(extra="forbid")

    path: str
    mode: ImportMode = ImportMode.REGISTER
    new_name: str | None = None


# How Compare-VM's problems end when the id or the name is taken; the CLI adds its option.
ID_TAKEN_HINT = "import with a new id"
NAME_TAKEN_HINT = "import under another name"


class CompatibilityReport(BaseModel):
    """Compare-VM: what would keep the export from importing or starting on this host."""

    vm_id: str
    name: str
    compatible: bool
    problems: list[str]


class CheckpointCreate(BaseModel):
    """``POST /vms/{id}/checkpoints`` (Checkpoint-VM); no name: Hyper-V's "VM - (date time)"."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    type: CheckpointType = CheckpointType.STANDARD


class CheckpointJob(Job):
    """The job creating a checkpoint, with the name the checkpoint gets."""

    checkpoint: str


class CheckpointRename(BaseModel):
    """``PATCH /vms/{id}/checkpoints/{name}`` (Rename-VMCheckpoint)."""

    model_config = ConfigDict(extra="forbid")

    name: str


# Above QEMU's own limit the VM would no longer start. Checked on the requests, not in vm.json's
# model: a vm.json written before, with such a limit, still loads, to be set right.
QosLimit = Annotated[int, Field(le=MAX_QOS_LIMIT)]


class DiskAdd(BaseModel):
    """``POST /vms/{id}/disks`` (Add-VMHardDiskDrive): a disk image inside a storage root;
    no ``slot``: the controller's first free one."""

    model_config = ConfigDict(extra="forbid")

    path: str
    controller: int = 0
    slot: int | None = None
    read_only: bool = False
    max_iops: QosLimit | None = None
    max_bytes_per_sec: QosLimit | None = None


class DiskQos(BaseModel):
    """``PATCH /vms/{id}/disks/{controller}/{slot}``: Storage QoS; absent keeps a limit, 0 lifts
    it (Set-VMHardDiskDrive -MaximumIOPS 0)."""

    model_config = ConfigDict(extra="forbid")

    max_iops: QosLimit | None = None
    max_bytes_per_sec: QosLimit | None = None


class DvdInsert(BaseModel):
    """``PUT /vms/{id}/dvd`` (Set-VMDvdDrive -Path): an ISO image inside a storage root."""

    model_config = ConfigDict(extra="forbid")

    path: str


class DiskSlot(BaseModel):
    """A disk and where it is attached (or was, for one just removed)."""

    controller: int
    slot: int
    disk: DiskAttachment


class DiskRow(DiskSlot):
    """One disk of ``GET /vms/{id}/disks``: what its image says (``error`` when it cannot be
    read) and, while the VM runs, the storage provider's counters."""

    info: ImageInfo | None = None
    error: str | None = None
    stats: DiskStats | None = None


class VmDisks(BaseModel):
    """``GET /vms/{id}/disks`` (Get-VMHardDiskDrive, Get-VMDvdDrive)."""

    disks: list[DiskRow]
    dvd: DvdDrive | None
