"""What the API asks the manager to do, as plain values: parsing is done, nothing is decided yet."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pyhv.model import VmConfig
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import ExecRequest, VmPatch


class Power(StrEnum):
    """The power operations of the API, each a path segment of ``POST /vms/{id}/<op>``."""

    START = "start"
    STOP = "stop"
    TURN_OFF = "turn-off"
    SAVE = "save"
    PAUSE = "pause"
    RESUME = "resume"
    RESTART = "restart"


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
