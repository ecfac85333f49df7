"""``/vms``: request bodies become commands for the manager; its answers become responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from pyhv.errors import UsageError
from pyhv.service.api.deps import Admin, Operator, Reader, Svc
from pyhv.service.commands import CreateVm, ExecInVm, Power, PowerVm, RemoveVm, UpdateVm
from pyhv.service.jobs import Job
from pyhv.service.manager import VmManager
from pyhv.service.schemas import (
    ExecOutput,
    ExecRequest,
    VmCreate,
    VmPatch,
    VmSample,
    VmSummary,
    VmView,
)

router = APIRouter(prefix="/vms", tags=["vms"])


@router.get(
    "",
    response_model=list[VmSummary],
    dependencies=[Reader],
    responses={304: {"description": "unchanged since the ETag given in If-None-Match"}},
)
async def list_vms(svc: Svc, if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """Every VM with its state (Get-VM); send the last ETag back to get 304 when unchanged."""
    return listing(svc.manager, if_none_match)


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[Admin])
async def create_vm(body: VmCreate, svc: Svc, response: Response) -> VmView:
    """Register a new VM (New-VM); its disks must lie inside the storage roots."""
    config, policy = body.split()
    view = await svc.manager.create(CreateVm(config, policy))
    response.headers["Location"] = f"/vms/{view.config.id}"
    return view


@router.get("/{vm}", response_model=VmView, dependencies=[Reader])
async def get_vm(vm: str, svc: Svc) -> Response:
    """One VM by id or name: configuration, status and resource controls."""
    return one_vm(svc.manager, vm)


# The two bodies below are also served by :mod:`pyhv.service.api.cached_reads`, which answers
# these GETs without FastAPI's routing and dependencies; both must build the same response.


def listing(manager: VmManager, if_none_match: str | None) -> Response:
    """``GET /vms``: 304 when the caller's ETag is current, else the cached listing."""
    etag, body = manager.list_json()
    if if_none_match == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


def one_vm(manager: VmManager, vm: str) -> Response:
    """``GET /vms/{vm}``. :raises NotFoundError: for an unknown name or id."""
    return Response(manager.get_json(vm), media_type="application/json")


@router.patch("/{vm}", dependencies=[Admin])
async def update_vm(vm: str, body: VmPatch, svc: Svc) -> VmView:
    """Change settings (Set-VM, Set-VMProcessor, Set-VMMemory)."""
    return await svc.manager.update(UpdateVm(vm, body))


@router.delete("/{vm}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Admin])
async def remove_vm(vm: str, svc: Svc) -> None:
    """Forget a VM that is Off or Saved; its disks stay (Remove-VM)."""
    await svc.manager.remove(RemoveVm(vm))


@router.get("/{vm}/stats", dependencies=[Reader])
async def vm_stats(vm: str, svc: Svc) -> VmSample:
    """CPU, memory and disk figures of a running VM, with its CPU use since the last sample."""
    return await svc.manager.stats(vm)


@router.post("/{vm}/exec", dependencies=[Operator])
async def exec_in_vm(vm: str, body: ExecRequest, svc: Svc) -> ExecOutput:
    """Run a command in the guest through its agent (PowerShell Direct's Invoke-Command)."""
    return await svc.manager.exec(ExecInVm(vm, body))


# Last: "/{vm}/{op}" would otherwise take "/{vm}/exec".
@router.post(
    "/{vm}/{op}",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Operator],
    responses={202: {"headers": {"Location": {"description": "the job, /jobs/{id}"}}}},
)
async def power_vm(
    vm: str,
    op: Power,
    svc: Svc,
    response: Response,
    ready_timeout_s: Annotated[float | None, Query(gt=0, le=3600)] = None,
    shutdown_timeout_s: Annotated[float | None, Query(gt=0, le=3600)] = None,
) -> Job:
    """Start-VM, Stop-VM, Save-VM, Suspend-VM, Resume-VM, Restart-VM: a job to follow.

    ``ready_timeout_s`` (start only): the job also waits for the guest kit's ready line.
    ``shutdown_timeout_s`` (stop only): how long the guest has to power off before it is
    turned off.
    """
    _check_applies("ready_timeout_s", ready_timeout_s, op, Power.START)
    _check_applies("shutdown_timeout_s", shutdown_timeout_s, op, Power.STOP)
    job = await svc.manager.power(PowerVm(vm, op, ready_timeout_s, shutdown_timeout_s))
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


def _check_applies(name: str, value: float | None, op: Power, only: Power) -> None:
    """:raises UsageError: for a parameter given to an operation it does not apply to."""
    if value is not None and op is not only:
        raise UsageError(f"{name} applies to {only.value} only, not to {op.value}")
