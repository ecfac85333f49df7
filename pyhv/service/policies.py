"""Resource policies as Set-VMProcessor and Set-VMMemory define them, and the cgroups holding them.

The decisions are pure functions of numbers: what CPU quota and weight a VM's settings mean, and
whether a VM may start given what the running VMs already reserve. Writing those values is the
job of a small :class:`Cgroups` interface with one implementation per cgroup version (these
machines run v1, with the cpu controller at ``/sys/fs/cgroup/cpu,cpuacct``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pyhv.errors import ConflictError

log = logging.getLogger(__name__)

CFS_PERIOD_US = 100_000
DEFAULT_WEIGHT = 100  # Hyper-V's default relative weight, and cgroup v2's default cpu.weight
V1_DEFAULT_SHARES = 1024
V1_MIN_SHARES, V1_MAX_SHARES = 2, 262_144


class ProcessorPolicy(BaseModel):
    """Set-VMProcessor's resource control; percentages are of the VM's own processors."""

    model_config = ConfigDict(extra="forbid")

    limit_percent: Annotated[int, Field(ge=1, le=100)] = 100
    reserve_percent: Annotated[int, Field(ge=0, le=100)] = 0
    weight: Annotated[int, Field(ge=1, le=10_000)] = DEFAULT_WEIGHT


@dataclass(frozen=True)
class CpuSettings:
    """What one VM's cgroup should hold; ``quota_us`` None means unlimited."""

    quota_us: int | None
    period_us: int
    weight: int

    @property
    def v1_shares(self) -> int:
        shares = self.weight * V1_DEFAULT_SHARES // DEFAULT_WEIGHT
        return max(V1_MIN_SHARES, min(V1_MAX_SHARES, shares))


def cpu_settings(processors: int, policy: ProcessorPolicy) -> CpuSettings:
    """A limit of L% on N processors is a quota of N·L% of each period."""
    quota = None
    if policy.limit_percent < 100:
        quota = CFS_PERIOD_US * processors * policy.limit_percent // 100
    return CpuSettings(quota, CFS_PERIOD_US, policy.weight)


def reserved_cpus(processors: int, policy: ProcessorPolicy) -> float:
    return processors * policy.reserve_percent / 100


def admit_reserve(
    name: str,
    wanted: float,
    host_cpus: int,
    held: Mapping[str, float],
) -> None:
    """Refuse a start whose reserve, added to the running VMs' reserves, exceeds the host.

    :param held: reserved processors of each running VM, by name.
    :raises ConflictError: naming the VMs that hold the reserve.
    """
    if wanted <= 0:
        return
    total = sum(held.values())
    if total + wanted <= host_cpus + 1e-9:
        return
    holders = ", ".join(f"{n} ({cpus:g})" for n, cpus in sorted(held.items()) if cpus > 0)
    raise ConflictError(
        f"cannot reserve {wanted:g} processors for {name}: the host has {host_cpus} and "
        f"{total:g} are reserved by {holders or 'no VM'}; lower the reserve or stop one of them"
    )


def admit_memory(name: str, startup_mib: int, available_mib: int) -> None:
    """:raises ConflictError: when the host cannot back the VM's startup memory."""
    if startup_mib > available_mib:
        raise ConflictError(
            f"not enough memory to start {name}: it needs {startup_mib} MiB and the host has "
            f"{available_mib} MiB available; lower its startup memory or stop another VM"
        )


class Cgroups(Protocol):
    """One cgroup per running VM under a ``pyhv`` parent."""

    def apply(self, vm_id: str, settings: CpuSettings) -> None: ...

    def attach(self, vm_id: str, pids: Iterable[int]) -> None: ...

    def remove(self, vm_id: str) -> None: ...


def _write(path: Path, value: str) -> None:
    log.debug("cgroup %s <- %s", path, value)
    path.write_text(value)


def _remove_dir(path: Path) -> None:
    """A cgroup still holding processes (a VM that outlived us) is left for the next stop."""
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("cgroup %s not removed: %s", path, err)


class _CgroupTree:
    """What both versions share: a ``pyhv/<vm id>`` folder whose ``cgroup.procs`` takes pids."""

    base: Path

    def _dir(self, vm_id: str) -> Path:
        raise NotImplementedError

    def attach(self, vm_id: str, pids: Iterable[int]) -> None:
        procs = self._dir(vm_id) / "cgroup.procs"
        for pid in pids:
            _write(procs, str(pid))

    def remove(self, vm_id: str) -> None:
        _remove_dir(self.base / vm_id)


class CgroupsV1(_CgroupTree):
    """cgroup v1: cfs quota and shares in the cpu controller's hierarchy."""

    def __init__(self, cpu_root: Path) -> None:
        self.base = cpu_root / "pyhv"

    def _dir(self, vm_id: str) -> Path:
        path = self.base / vm_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def apply(self, vm_id: str, settings: CpuSettings) -> None:
        d = self._dir(vm_id)
        _write(d / "cpu.cfs_period_us", str(settings.period_us))
        _write(d / "cpu.cfs_quota_us", str(settings.quota_us if settings.quota_us else -1))
        _write(d / "cpu.shares", str(settings.v1_shares))


class CgroupsV2(_CgroupTree):
    """cgroup v2: ``cpu.max`` and ``cpu.weight``; the parent must delegate the cpu controller."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "pyhv"

    def _dir(self, vm_id: str) -> Path:
        if not self.base.exists():
            self.base.mkdir()
            _write(self.root / "cgroup.subtree_control", "+cpu")
            _write(self.base / "cgroup.subtree_control", "+cpu")
        path = self.base / vm_id
        path.mkdir(exist_ok=True)
        return path

    def apply(self, vm_id: str, settings: CpuSettings) -> None:
        d = self._dir(vm_id)
        quota = str(settings.quota_us) if settings.quota_us else "max"
        _write(d / "cpu.max", f"{quota} {settings.period_us}")
        _write(d / "cpu.weight", str(settings.weight))


def detect_cgroups(root: Path = Path("/sys/fs/cgroup")) -> Cgroups | None:
    """The cgroup version this host mounts, or None when no cpu controller is reachable."""
    if (root / "cgroup.controllers").exists():
        return CgroupsV2(root)
    for name in ("cpu,cpuacct", "cpu"):
        if (root / name / "cpu.shares").exists():
            return CgroupsV1(root / name)
    return None
