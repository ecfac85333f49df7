"""VmPorter: decides exports and imports (Export-VM, Import-VM, Compare-VM) and runs them as jobs.

The file work is in :mod:`pyhv.service.transfer`; this module checks what may happen: the VM at
rest and not busy, every path inside the storage roots, and a clean compatibility report
before anything is registered.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from pydantic import ValidationError

from pyhv.errors import ConflictError, StateError
from pyhv.model import VmConfig, VmState, config_error
from pyhv.paths import SAVED_STATE, SAVED_STATE_INFO
from pyhv.saved_state_file import saved_paused
from pyhv.service.commands import CreateVm
from pyhv.service.confine import confine_config
from pyhv.service.jobs import Job, JobContext
from pyhv.service.manager import VmManager, check_name_form
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.registry import adopt_saved_state
from pyhv.service.schemas import CompatibilityReport, ExportRequest, ImportMode, ImportRequest
from pyhv.service.transfer import compare, copy_vm_files, export_vm, read_export

IMPORTED_FOLDER = "imported"


class VmPorter:
    def __init__(self, manager: VmManager) -> None:
        self.m = manager

    async def export(self, vm: str, request: ExportRequest) -> Job:
        """:raises StateError: the VM runs. :raises ConflictError: busy, or the folder exists.
        :raises PermissionDenied: the folder is outside the storage roots."""
        async with self.m.holding(vm) as entry:
            if entry.status.state not in (VmState.OFF, VmState.SAVED):
                raise StateError(
                    f"cannot export VM {entry.config.name!r}: it is {entry.status.state}; "
                    "turn it off or save it first"
                )
            dest = self.m.roots.confine(request.path, "export folder")
            if dest.exists():
                raise ConflictError(f"export folder {dest} already exists: choose a new one")
            config, policy, paths = entry.config, entry.policy, self.m.paths

            async def run(ctx: JobContext) -> None:
                await asyncio.to_thread(export_vm, config, policy, paths, dest, ctx.progress)

            return self.m.submit_exclusive(config.id, "export", run)

    async def report(self, request: ImportRequest) -> CompatibilityReport:
        """:raises NotFoundError: the folder is no export. :raises PermissionDenied: outside
        the storage roots."""
        folder = self.m.roots.confine(request.path, "import folder")
        config, _ = await asyncio.to_thread(read_export, folder)
        config = renamed(config, request.new_name)
        return await asyncio.to_thread(self._compare, config, request.mode)

    def _compare(self, config: VmConfig, mode: ImportMode) -> CompatibilityReport:
        entries = self.m.registry.entries()
        return compare(
            config,
            mode,
            ids={e.config.id for e in entries},
            names={e.config.name for e in entries},
            host_memory_mib=self.m.host.memory_mib,
            known_switches=set(),  # virtual switches do not exist yet
        )

    async def import_(self, request: ImportRequest) -> Job:
        """Refuse what Compare-VM reports, then register or copy as a job, under the new name
        when the request gives one (the inventory's vm.json has it; the export's stays as is).

        :raises ConflictError: naming the first problem of the compatibility report.
        :raises ConfigError: the new name is not a valid VM name.
        """
        folder = self.m.roots.confine(request.path, "import folder")
        exported, policy = await asyncio.to_thread(read_export, folder)
        config = renamed(exported, request.new_name)
        report = await asyncio.to_thread(self._compare, config, request.mode)
        if not report.compatible:
            more = len(report.problems) - 1
            extra = f" (and {more} more: see POST /vms/import/report)" if more else ""
            what = repr(exported.name)
            if config.name != exported.name:
                what += f" as {config.name!r}"
            raise ConflictError(f"cannot import {what}: {report.problems[0]}{extra}")
        confine_config(config, self.m.roots)

        async def run(ctx: JobContext) -> None:
            await self._import(folder, config, policy, request.mode, ctx)

        return self.m.jobs.submit(f"import-{request.mode.value}", config.id, run)

    async def _import(
        self,
        folder: Path,
        config: VmConfig,
        policy: ProcessorPolicy,
        mode: ImportMode,
        ctx: JobContext,
    ) -> None:
        saved = folder / SAVED_STATE
        saved_state = saved if saved.exists() else None
        if mode != ImportMode.REGISTER:
            new_id = str(uuid.uuid4()) if mode == ImportMode.COPY_NEW_ID else config.id
            dest = self.m.roots.default / IMPORTED_FOLDER / new_id
            config = await asyncio.to_thread(copy_vm_files, config, saved_state, dest, ctx.progress)
            config = config.model_copy(update={"id": new_id})
            saved_state = dest / SAVED_STATE if saved_state else None
        view = await self.m.create(CreateVm(config, policy))
        if saved_state is not None:
            await asyncio.to_thread(
                adopt_saved_state,
                self.m.paths,
                view.config.id,
                saved_state,
                paused=saved_paused(folder / SAVED_STATE_INFO),
                keep_source=mode == ImportMode.REGISTER,
            )
            await self.m.refresh()


def renamed(config: VmConfig, new_name: str | None) -> VmConfig:
    """The exported VM under ``new_name`` (unchanged for None), held to a new VM's name rules;
    whether another VM has the name is Compare-VM's to say.

    :raises ConfigError: an invalid name, or one of a VM id's form.
    """
    if new_name is None:
        return config
    try:
        config = VmConfig.model_validate(config.model_dump() | {"name": new_name})
    except ValidationError as err:
        raise config_error(err) from None
    check_name_form(new_name)
    return config
