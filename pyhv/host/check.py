"""``pyhv host check``: can this host run VMs, and with which accelerator?

Like the prerequisites check of the Hyper-V role. ``check_host`` gathers the facts (and runs
two test guests: one under KVM when /dev/kvm opens, one under TCG); ``assess`` turns them into
problems (VMs cannot run) and warnings (a feature is unavailable) without any I/O.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from pydantic import BaseModel, computed_field

from pyhv.host.accel import AccelChoice, AccelFacts, decide, gather_facts
from pyhv.host.cpu import CpuInfo, read_cpuinfo
from pyhv.host.hugepages import HUGEPAGE_MIB, PoolCounts, read_pool
from pyhv.host.probe import ProbeResult, run_probe
from pyhv.host.qemu import find_qemu, qemu_version
from pyhv.host.resources import HostResources
from pyhv.host.system import (
    BridgeState,
    CgroupInfo,
    DevState,
    bridge_state,
    device_state,
    read_cgroups,
)
from pyhv.model.limits import MAX_PROCESSORS
from pyhv.worker.firmware import find_ovmf, find_seabios

POLICY_CONTROLLERS = ("cpu", "memory")


class CpuReport(BaseModel):
    vendor: str
    model: str
    logical_cpus: int
    virtualization_flag: str | None


class KvmReport(BaseModel):
    device: DevState
    modules: list[str]
    probe: ProbeResult | None


class QemuReport(BaseModel):
    binary: str | None
    version: str | None
    tcg_probe: ProbeResult | None


class FirmwareReport(BaseModel):
    seabios: str | None
    ovmf_code: str | None
    ovmf_vars: str | None


class NetworkReport(BaseModel):
    bridge: BridgeState
    tun: DevState


class VmLimitsReport(BaseModel):
    """The most one VM may have on this host."""

    max_processors: int
    max_memory_mib: int


class HugePagesReport(BaseModel):
    """The 2 MiB huge pages the kernel can hand out (in pages): guest RAM goes on them while
    ``headroom`` holds it, and VMs with ``--hugepages`` are refused at start without.
    ``available`` is the pool's free minus reserved; surplus pages come past the pool up to
    ``overcommit``."""

    total: int
    free: int
    reserved: int
    available: int
    available_mib: int
    surplus: int = 0
    overcommit: int = 0
    headroom: int = 0
    headroom_mib: int = 0

    @classmethod
    def of(cls, pool: PoolCounts) -> HugePagesReport:
        return cls(
            total=pool.total,
            free=pool.free,
            reserved=pool.reserved,
            available=pool.available,
            available_mib=pool.available * HUGEPAGE_MIB,
            surplus=pool.surplus,
            overcommit=pool.overcommit,
            headroom=pool.headroom,
            headroom_mib=pool.headroom * HUGEPAGE_MIB,
        )


class HostReport(BaseModel):
    kernel: str
    vm_limits: VmLimitsReport
    cpu: CpuReport
    kvm: KvmReport
    qemu: QemuReport
    firmware: FirmwareReport
    cgroups: CgroupInfo
    network: NetworkReport
    accelerator: AccelChoice
    problems: list[str]
    warnings: list[str]
    hugepages: HugePagesReport | None = None  # None: the pool was not read

    @computed_field  # type: ignore[prop-decorator]
    @property
    def can_run_vms(self) -> bool:
        return not self.problems


def assess(
    qemu: QemuReport,
    firmware: FirmwareReport,
    cgroups: CgroupInfo,
    network: NetworkReport,
    accelerator: AccelChoice,
) -> tuple[list[str], list[str]]:
    """(problems, warnings): problems stop every VM, warnings a feature."""
    problems: list[str] = []
    warnings: list[str] = []
    if qemu.binary is None:
        problems.append("qemu-system-x86_64 not found: install the qemu-system-x86 package")
    elif qemu.tcg_probe is not None and not qemu.tcg_probe.ok:
        problems.append(f"QEMU cannot run a guest: {qemu.tcg_probe.detail}")
    if firmware.seabios is None and firmware.ovmf_code is None:
        problems.append("no firmware: install the seabios and ovmf packages")
    elif firmware.seabios is None:
        warnings.append("SeaBIOS not found: generation 1 VMs cannot start (install seabios)")
    elif firmware.ovmf_code is None:
        warnings.append("OVMF not found: generation 2 VMs cannot start (install ovmf)")
    if accelerator.name == "tcg":
        warnings.append(f"VMs run under TCG software emulation (slower): {accelerator.reason}")
    missing = [c for c in POLICY_CONTROLLERS if c not in cgroups.controllers]
    if missing:
        warnings.append(f"cgroup controllers {', '.join(missing)} missing: no CPU/memory policies")
    if network.bridge == "missing":
        warnings.append("no bridge support in the kernel: virtual switches unavailable")
    if network.tun != "ok":
        warnings.append(f"/dev/net/tun is {network.tun}: VMs cannot have network adapters")
    return problems, warnings


def _cpu_report(cpu: CpuInfo) -> CpuReport:
    return CpuReport(
        vendor=cpu.vendor,
        model=cpu.model,
        logical_cpus=cpu.logical_cpus,
        virtualization_flag=cpu.virtualization_flag,
    )


def check_host() -> HostReport:
    """Everything ``pyhv host check`` shows; takes a few seconds (two test guests)."""
    cpu = read_cpuinfo()
    facts: AccelFacts = gather_facts(cpu)
    binary = find_qemu()
    kvm_probe = run_probe(binary, "kvm") if binary and facts.dev_kvm == "ok" else None
    qemu = QemuReport(
        binary=binary,
        version=qemu_version(binary) if binary else None,
        tcg_probe=run_probe(binary, "tcg") if binary else None,
    )
    seabios, ovmf = find_seabios(), find_ovmf()
    firmware = FirmwareReport(
        seabios=str(seabios) if seabios else None,
        ovmf_code=str(ovmf[0]) if ovmf else None,
        ovmf_vars=str(ovmf[1]) if ovmf else None,
    )
    cgroups = read_cgroups()
    network = NetworkReport(bridge=bridge_state(), tun=device_state(Path("/dev/net/tun")))
    failed = ProbeResult(accel="kvm", ok=False, detail="not run", seconds=0.0)
    accelerator = decide(facts, lambda: kvm_probe or failed, os.environ.get("PYHV_ACCEL"))
    problems, warnings = assess(qemu, firmware, cgroups, network, accelerator)
    host = HostResources.detect()
    return HostReport(
        kernel=platform.release(),
        vm_limits=VmLimitsReport(
            max_processors=min(MAX_PROCESSORS, host.cores), max_memory_mib=host.memory_mib
        ),
        cpu=_cpu_report(cpu),
        kvm=KvmReport(device=facts.dev_kvm, modules=list(facts.modules), probe=kvm_probe),
        qemu=qemu,
        firmware=firmware,
        cgroups=cgroups,
        network=network,
        accelerator=accelerator,
        problems=problems,
        warnings=warnings,
        hugepages=HugePagesReport.of(read_pool()),
    )
