"""Pydantic models shared by config files, the worker, the API and the client (no I/O)."""

from pyhv.model.limits import check_fits_host
from pyhv.model.status import DiskStats, VmState, VmStats, VmStatus
from pyhv.model.validation import config_error, make_vm_config, parse_vm_config
from pyhv.model.vm import (
    AutomaticStartAction,
    AutomaticStopAction,
    ComPort,
    DiskAttachment,
    DvdDrive,
    KernelBoot,
    NetworkAdapter,
    ScsiController,
    VmConfig,
)

__all__ = [
    "AutomaticStartAction",
    "AutomaticStopAction",
    "ComPort",
    "DiskAttachment",
    "DiskStats",
    "DvdDrive",
    "KernelBoot",
    "NetworkAdapter",
    "ScsiController",
    "VmConfig",
    "VmState",
    "VmStats",
    "VmStatus",
    "check_fits_host",
    "config_error",
    "make_vm_config",
    "parse_vm_config",
]
