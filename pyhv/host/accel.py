"""Choosing the accelerator: KVM only where hardware virtualization really works, else TCG.

/dev/kvm alone is not trusted: the ``kvm_pvm`` module provides it without VT-x/AMD-V, and
guests under it never finish booting. KVM is chosen when the CPU has vmx/svm, a hardware KVM
module is loaded, /dev/kvm opens, no software KVM module is present, and a test guest runs
(``probe.py``). ``PYHV_ACCEL=tcg|kvm`` overrides the decision (tests, diagnosis).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from pyhv.errors import ConfigError
from pyhv.host.cpu import CpuInfo, read_cpuinfo
from pyhv.host.probe import ProbeResult, run_probe
from pyhv.host.qemu import find_qemu
from pyhv.host.system import DevState, device_state, kvm_modules

HARDWARE_KVM_MODULES = frozenset({"kvm_intel", "kvm_amd"})
# Provide /dev/kvm without VT-x/AMD-V (PVM runs guests paravirtualized, ordinary ones crawl).
SOFTWARE_KVM_MODULES = frozenset({"kvm_pvm"})
DEV_KVM = Path("/dev/kvm")

Accel = Literal["kvm", "tcg"]


class AccelChoice(BaseModel):
    name: Accel
    reason: str


@dataclass(frozen=True)
class AccelFacts:
    """What the decision looks at; gathered by ``gather_facts``, made up in tests."""

    cpu_virt_flag: str | None
    dev_kvm: DevState
    modules: tuple[str, ...]


def _tcg(reason: str) -> AccelChoice:
    return AccelChoice(name="tcg", reason=reason)


def decide(
    facts: AccelFacts,
    probe: Callable[[], ProbeResult],
    override: str | None = None,
) -> AccelChoice:
    """The accelerator and why; ``probe`` runs only when everything else points to KVM.

    :raises ConfigError: when ``override`` is neither kvm nor tcg.
    """
    if override:
        if override not in ("kvm", "tcg"):
            raise ConfigError(f"PYHV_ACCEL={override!r} is not valid: use kvm or tcg")
        name: Accel = "kvm" if override == "kvm" else "tcg"
        return AccelChoice(name=name, reason=f"forced by PYHV_ACCEL={override}")
    software = [m for m in facts.modules if m in SOFTWARE_KVM_MODULES]
    if software:
        return _tcg(f"/dev/kvm is provided by {software[0]}, not hardware virtualization")
    if facts.cpu_virt_flag is None:
        return _tcg("the CPU shows no vmx or svm flag: hardware virtualization is off or hidden")
    if facts.dev_kvm == "missing":
        return _tcg("/dev/kvm is missing: load kvm_intel or kvm_amd")
    if facts.dev_kvm == "denied":
        return _tcg("/dev/kvm cannot be opened: run as root or join the kvm group")
    hardware = [m for m in facts.modules if m in HARDWARE_KVM_MODULES]
    if not hardware:
        return _tcg("/dev/kvm is not provided by kvm_intel or kvm_amd")
    result = probe()
    if not result.ok:
        return _tcg(f"a KVM test guest failed: {result.detail}")
    return AccelChoice(
        name="kvm",
        reason=f"hardware virtualization ({facts.cpu_virt_flag}, {hardware[0]}) ran a test guest",
    )


def gather_facts(cpu: CpuInfo | None = None) -> AccelFacts:
    return AccelFacts(
        cpu_virt_flag=(cpu or read_cpuinfo()).virtualization_flag,
        dev_kvm=device_state(DEV_KVM),
        modules=tuple(kvm_modules()),
    )


def probe_kvm() -> ProbeResult:
    qemu = find_qemu()
    if qemu is None:
        return ProbeResult(accel="kvm", ok=False, detail="QEMU is not installed", seconds=0.0)
    return run_probe(qemu, "kvm")


@functools.cache
def choose_accelerator() -> AccelChoice:
    """The accelerator every VM of this process uses; decided once (the probe costs a QEMU
    start).

    :raises ConfigError: when PYHV_ACCEL has an invalid value.
    """
    return decide(gather_facts(), probe_kvm, os.environ.get("PYHV_ACCEL"))
