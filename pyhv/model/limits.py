"""Per-VM configuration limits, and the check that a configuration fits the host it runs on.

The article's limits (4 processors, 32 GB, 12 network adapters, 4 SCSI controllers of 256 disks)
are minimums pyhv must allow; the caps below are what QEMU's q35 machine takes without an IOMMU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyhv.errors import ConfigError

if TYPE_CHECKING:
    from pyhv.model.vm import VmConfig

MAX_PROCESSORS = 240  # q35 without interrupt remapping addresses APIC IDs up to 254
MIN_MEMORY_MIB = 32
MAX_MEMORY_MIB = 12 * 1024 * 1024  # 12 TiB, as Hyper-V
MAX_NETWORK_ADAPTERS = 12
MAX_SCSI_CONTROLLERS = 4
MAX_SCSI_SLOT = 255
MAX_NAME_LENGTH = 100
# QEMU's THROTTLE_VALUE_MAX: a larger Storage QoS limit (IOPS or bytes per second) makes QEMU
# refuse the VM's throttle group, and so the VM's start.
MAX_QOS_LIMIT = 10**15


def describe_mib(mib: int) -> str:
    """``64 GiB``, ``23.5 GiB``, ``31 MiB``: memory sizes as people read them in errors."""
    for unit, size in (("TiB", 1024 * 1024), ("GiB", 1024)):
        if mib >= size:
            value = mib / size
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{mib} MiB"


def check_fits_host(config: VmConfig, *, host_cores: int, host_memory_mib: int) -> None:
    """A VM never gets more processors or memory than the host has.

    :raises ConfigError: naming the limit and what the host has.
    """
    limit = min(MAX_PROCESSORS, host_cores)
    if config.processor_count > limit:
        raise ConfigError(
            f"processor count {config.processor_count} exceeds the limit of {limit} "
            f"(host has {host_cores} cores)"
        )
    if config.memory_startup_mib > host_memory_mib:
        raise ConfigError(
            f"startup memory {describe_mib(config.memory_startup_mib)} exceeds the limit of "
            f"{describe_mib(host_memory_mib)} (the host's memory)"
        )
