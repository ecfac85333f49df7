"""``/vms/{vm}/checkpoints``: Checkpoint-VM, Get-VMCheckpoint, Restore-VMCheckpoint,
Remove-VMCheckpoint, Rename-VMCheckpoint, Export-VMCheckpoint.

Creating, applying, removing and exporting are jobs that hold the VM like a power job: none
starts while another job works on the VM, and no power job starts while one runs. Reads wait
for a checkpoint operation under way (the checkpoint lock), then see its result. Mounted before
``/vms`` so ``/vms/{vm}/{op}`` cannot take these paths. A checkpoint's name may hold a
``/`` (Hyper-V's own default names do): ``{name:path}`` takes it whole, sent as ``%2F``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from pyhv.checkpoints import Checkpoint, CheckpointTree
from pyhv.checkpoints.export import check_folder
from pyhv.checkpoints.planner import default_name
from pyhv.checkpoints.store import check_memory
from pyhv.checkpoints.tree import check_name
from pyhv.service.api.deps import Admin, Operator, Reader, Svc
from pyhv.service.jobs import Job, JobContext
from pyhv.service.schemas import CheckpointCreate, CheckpointJob, CheckpointRename, ExportRequest
from pyhv.storage.operations.progress import Progress

router = APIRouter(prefix="/vms/{vm}/checkpoints", tags=["checkpoints"])

_JOB: dict[int | str, dict[str, Any]] = {
    202: {"headers": {"Location": {"description": "the job, /jobs/{id}"}}}
}

# What a job runs in a thread: the VM's id and a progress callback in, anything out.
Work = Callable[[str, Progress], object]


@router.get("", dependencies=[Reader], response_model_exclude={"images"})
async def list_checkpoints(vm: str, svc: Svc) -> CheckpointTree:
    """The tree, oldest first; ``current`` is the checkpoint "Now" hangs from (Get-VMCheckpoint)."""
    _, tree = await asyncio.to_thread(svc.manager.checkpoints.tree, _vm_id(svc, vm))
    return tree


@router.post("", status_code=status.HTTP_202_ACCEPTED, dependencies=[Operator], responses=_JOB)
async def create_checkpoint(
    vm: str, body: CheckpointCreate, svc: Svc, response: Response
) -> CheckpointJob:
    """Checkpoint-VM as a job; ``checkpoint`` in the answer is the name it gets."""
    checkpoints = svc.manager.checkpoints
    vm_id = _vm_id(svc, vm)
    name = body.name
    if name is None:
        config, tree = await asyncio.to_thread(checkpoints.tree, vm_id)
        name = default_name(tree, config.name, datetime.now(UTC))
    else:
        check_name(name)  # refused now, not as a job that was accepted and then failed
    create = checkpoints.create
    job = await _submit(svc, vm_id, "checkpoint", lambda v, _: create(v, name, body.type), response)
    return CheckpointJob(**job.model_dump(), checkpoint=name)


@router.get("/{name:path}", dependencies=[Reader])
async def get_checkpoint(vm: str, name: str, svc: Svc) -> Checkpoint:
    """One checkpoint, by name or id."""
    return await _find(svc, vm, name)


@router.post(
    "/{name:path}/apply",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Operator],
    responses=_JOB,
)
async def apply_checkpoint(vm: str, name: str, svc: Svc, response: Response) -> Job:
    """Restore-VMCheckpoint as a job: the current state is discarded (a running VM is turned
    off); a checkpoint with memory comes back Running, or Saved if it was taken Saved."""
    node = await _find(svc, vm, name)
    check_memory(node)
    apply = svc.manager.checkpoints.apply
    return await _submit(svc, vm, "checkpoint-apply", lambda v, p: apply(v, node.id, p), response)


@router.delete(
    "/{name:path}", status_code=status.HTTP_202_ACCEPTED, dependencies=[Operator], responses=_JOB
)
async def remove_checkpoint(
    vm: str,
    name: str,
    svc: Svc,
    response: Response,
    subtree: Annotated[bool, Query()] = False,
) -> Job:
    """Remove-VMCheckpoint as a job (with ``subtree``, every checkpoint below too); data still
    needed is merged, online while the VM runs."""
    node = await _find(svc, vm, name)
    remove = svc.manager.checkpoints.remove
    return await _submit(
        svc, vm, "checkpoint-remove", lambda v, p: remove(v, node.id, subtree, p), response
    )


@router.patch("/{name:path}", dependencies=[Operator])
async def rename_checkpoint(vm: str, name: str, body: CheckpointRename, svc: Svc) -> Checkpoint:
    """Rename-VMCheckpoint, in any VM state."""
    rename = svc.manager.checkpoints.rename
    async with svc.manager.holding(vm) as entry:
        return await asyncio.to_thread(rename, entry.config.id, name, body.name)


@router.post(
    "/{name:path}/export",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Admin],
    responses=_JOB,
)
async def export_checkpoint(
    vm: str, name: str, body: ExportRequest, svc: Svc, response: Response
) -> Job:
    """Export-VMCheckpoint as a job, into a new folder inside a storage root."""
    node = await _find(svc, vm, name)
    check_memory(node)
    dest = check_folder(svc.manager.roots.confine(body.path, "export folder"))
    export = svc.manager.checkpoints.export
    return await _submit(
        svc, vm, "checkpoint-export", lambda v, _: export(v, node.id, dest), response
    )


def _vm_id(svc: Svc, vm: str) -> str:
    """:raises NotFoundError: for an unknown VM name or id."""
    return svc.manager.registry.get(vm).config.id


async def _find(svc: Svc, vm: str, name: str) -> Checkpoint:
    """:raises NotFoundError: naming the checkpoints the VM has."""
    _, node = await asyncio.to_thread(svc.manager.checkpoints.get, _vm_id(svc, vm), name)
    return node


async def _submit(svc: Svc, vm: str, operation: str, work: Work, response: Response) -> Job:
    """Run ``work`` in a thread as a job holding the VM, once the VM's short changes (a disk
    attached, say) are done; the job's progress follows its bytes.

    :raises ConflictError: another job works on the VM.
    """
    manager = svc.manager
    vm_id = manager.registry.get(vm).config.id
    loop = asyncio.get_running_loop()

    async def run(ctx: JobContext) -> None:
        def progress(done: int, total: int) -> None:
            loop.call_soon_threadsafe(ctx.progress, 100 * done // max(total, 1))

        future = asyncio.ensure_future(asyncio.to_thread(work, vm_id, progress))
        try:
            # Journaled, all or nothing, it cannot stop halfway: a cancelled job waits for it,
            # holding the VM, and ends as it ends.
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({future})
            future.result()
        finally:
            await manager.refresh()  # its configuration and state changed on disk

    async with manager.holding(vm_id):
        job = manager.submit_exclusive(vm_id, operation, run)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job
