"""What the API asks the manager to do, as plain values: parsing is done, nothing is decided yet."""

from __future__ import annotations

from dataclasses import dataclass

from pyhv.model import VmConfig
from pyhv.service.operations import Power
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import ExecRequest, VmPatch


@dataclass(frozen=True)
class CreateVm:
    config: VmConfig
    policy: ProcessorPolicy


@dataclass(frozen=True)
class UpdateVm:
    vm: str
    patch: VmPatch


@dataclass(frozen=True)
class RemoveVm:
    vm: str


@dataclass(frozen=True)
class PowerVm:
    vm: str
    op: Power
    ready_timeout_s: float | None = None  # start only: also wait for the guest's ready line
    shutdown_timeout_s: float | None = None  # stop only: then turn off (the worker's default)


@dataclass(frozen=True)
class ExecInVm:
    vm: str
    request: ExecRequest


__all__ = ["CreateVm", "ExecInVm", "Power", "PowerVm", "RemoveVm", "UpdateVm"]
