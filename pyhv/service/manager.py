"""VmManager: the one place that decides what happens to VMs.

It checks every command against the VM's state, the host and the policies, then carries it out
through the inventory (configurations on disk) and the VM's worker (everything that runs).
It never blocks the event loop: disk and worker I/O run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from pydantic import TypeAdapter, ValidationError

from pyhv.checkpoints import CheckpointManager
from pyhv.errors import ConfigError, ConflictError, PyhvError, StateError
from pyhv.guestkit import READY_LINE
from pyhv.host.resources import HostResources
from pyhv.inventory import Inventory
from pyhv.model import AutomaticStartAction, VmConfig, VmState, config_error
from pyhv.service.commands import CreateVm, ExecInVm, Power, PowerVm, RemoveVm, UpdateVm
from pyhv.service.confine import StorageRoots, confine_config, require_files
from pyhv.service.events import EventBus
from pyhv.service.guards import VmGuards
from pyhv.service.jobs import Job, JobContext, Jobs, Operation
from pyhv.service.policies import (
    Cgroups,
    admit_memory,
    admit_reserve,
    cpu_settings,
    reserved_cpus,
)
from pyhv.service.power import (
    OP_TIMEOUT_S,
    QUICK_OP_TIMEOUT_S,
    READY_EXPECTED_S,
    STEPS,
    Step,
    exec_args,
    exec_output,
    not_reached,
    with_progress,
)
from pyhv.service.registry import (
    ScanResult,
    VmEntry,
    VmRegistry,
    discard_saved_state,
    interrupted_vms,
    scan,
    write_policy,
)
from pyhv.service.schemas import ExecOutput, VmSample, VmSummary, VmView, summarize
from pyhv.service.supervisor import Supervisor
from pyhv.units import MiB
from pyhv.worker.disk_edit import refuse_users_elsewhere
from pyhv.worker.states import transition
from pyhv.worker.status_file import current_status

log = logging.getLogger(__name__)

SCAN_INTERVAL_S = 1.0
SETTLE_TIMEOUT_S = 10.0
SETTLE_POLL_S = 0.1
_LISTING = TypeAdapter(list[VmSummary])
# Changing these needs the VM at rest, as in Hyper-V; named as users know them, not as fields.
_OFF_ONLY = {
    "processor_count": "processor count",
    "memory_startup_mib": "startup memory",
    "memory_hugepages": "huge pages",
}


def _available_memory_mib() -> int:
    return int(psutil.virtual_memory().available // MiB)


class VmManager:
    def __init__(
        self,
        inventory: Inventory,
        events: EventBus,
        jobs: Jobs,
        roots: StorageRoots,
        host: HostResources,
        supervisor: Supervisor,
        cgroups: Cgroups | None,
        available_memory_mib: Callable[[], int] = _available_memory_mib,
    ) -> None:
        self.paths = inventory.paths
        self.inventory = inventory
        self.registry = VmRegistry(self.paths)
        self.checkpoints = CheckpointManager(self.paths, inventory)
        self.events = events
        self.jobs = jobs
        self.roots = roots
        self.host = host
        self.supervisor = supervisor
        self.cgroups = cgroups
        self._available_memory_mib = available_memory_mib
        # Changes of one VM wait for each other, never for another VM's.
        self.guards = VmGuards()
        # One status reader at a time: a scan that read a file before a job's own read must
        # not record its older state after the job's.
        self._reading_status = asyncio.Lock()
        self._listing: tuple[int, bytes] | None = None
        # Entity tags must not repeat across restarts, when the version counter starts over.
        self._instance = uuid.uuid4().hex[:8]
        self._scanner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the inventory, pick up VMs whose workers outlived a previous pyhvd, carry out
        the automatic start actions, then watch the VMs."""
        interrupted = await asyncio.to_thread(interrupted_vms, self.paths)
        await self.refresh()
        running = [e for e in self.registry.entries() if _running(e)]
        for entry in running:
            await self._apply_cgroup(entry)
        names = [e.config.name for e in running]
        log.info("%d VMs, %d running: %s", len(self.registry.entries()), len(names), names)
        await self._automatic_start(interrupted)
        self._scanner = asyncio.create_task(self._scan_forever(), name="vm-scanner")

    async def _automatic_start(self, interrupted: set[str]) -> None:
        """Start-VM for VMs set to start always, or to start if they ran when the host went
        down (their worker is gone though their status says they ran)."""
        for entry in self.registry.entries():
            action = entry.config.automatic_start_action
            if _running(entry) or action == AutomaticStartAction.NOTHING:
                continue
            if (
                action == AutomaticStartAction.START_IF_RUNNING
                and entry.config.id not in interrupted
            ):
                continue
            try:
                job = await self.power(PowerVm(entry.config.id, Power.START))
            except PyhvError as err:
                log.warning("automatic start of VM %s refused: %s", entry.config.name, err)
                continue
            log.info("automatic start of VM %s: job %s", entry.config.name, job.id)

    async def close(self) -> None:
        if self._scanner is not None:
            self._scanner.cancel()
            await asyncio.gather(self._scanner, return_exceptions=True)

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(SCAN_INTERVAL_S)
            try:
                await self.refresh()
            except Exception:
                log.exception("scanning the inventory failed")

    async def refresh(self) -> None:
        """Take in what others changed on disk: workers' status files, configs edited elsewhere."""
        async with self._reading_status:
            result = await asyncio.to_thread(scan, self.paths, self.registry.seen())
            self._apply(result)

    def _apply(self, result: ScanResult) -> None:
        for vm_id in result.gone:
            if (entry := self.registry.drop(vm_id)) is not None:
                self.events.publish("vm.removed", id=vm_id, name=entry.config.name)
        for vm_id, (config, policy, stamp) in result.configs.items():
            known = self.registry.has(vm_id)
            self.registry.put(config, policy, stamp)
            self.events.publish("vm.changed" if known else "vm.created", id=vm_id, name=config.name)
        for vm_id, (status, status_stamp) in result.statuses.items():
            if self.registry.has(vm_id) and self.registry.set_status(vm_id, status, status_stamp):
                self._state_changed(self.registry.get(vm_id))

    def _state_changed(self, entry: VmEntry) -> None:
        if not _running(entry) and self.cgroups is not None:
            self.cgroups.remove(entry.config.id)
        self._publish_state(entry)

    def _publish_state(self, entry: VmEntry) -> None:
        self.events.publish(
            "vm.state", **summarize(entry.config, entry.status).model_dump(mode="json")
        )

    # -- reads: memory only -------------------------------------------------------------------

    def list_json(self) -> tuple[str, bytes]:
        """``GET /vms`` as bytes and its entity tag, rebuilt only after a change, so listing
        thousands of VMs stays cheap and pollers can ask for 304."""
        version = self.registry.version
        if self._listing is None or self._listing[0] != version:
            rows = [summarize(e.config, e.status) for e in self.registry.entries()]
            self._listing = (version, _LISTING.dump_json(rows))
        return f'"{self._instance}-{version}"', self._listing[1]

    def get(self, ref: str) -> VmView:
        """:raises NotFoundError: for an unknown name or id."""
        entry = self.registry.get(ref)
        return VmView(config=entry.config, status=entry.status, policy=entry.policy)

    def get_json(self, ref: str) -> bytes:
        """``GET /vms/{id}`` as bytes, serialized once per change of the VM."""
        entry = self.registry.get(ref)
        if entry.view_json is None:
            view = VmView(config=entry.config, status=entry.status, policy=entry.policy)
            entry.view_json = view.model_dump_json().encode()
        return entry.view_json

    # -- configuration ------------------------------------------------------------------------

    async def create(self, cmd: CreateVm) -> VmView:
        """:raises ConflictError: name or id taken. :raises ConfigError: invalid or too big.
        :raises PermissionDenied: a path outside the storage roots."""
        config = confine_config(cmd.config, self.roots)
        await asyncio.to_thread(require_files, config)
        async with self.guards.inventory:
            _check_name_free(self.registry, config.name, config.id)
            _check_disks_free(self.registry, config)
            config = await asyncio.to_thread(self.inventory.create, config)
            await asyncio.to_thread(write_policy, self.paths, config.id, cmd.policy)
            entry = self.registry.put(config, cmd.policy)
        self.events.publish("vm.created", id=config.id, name=config.name)
        return VmView(config=entry.config, status=entry.status, policy=entry.policy)

    async def update(self, cmd: UpdateVm) -> VmView:
        """:raises StateError: processors or memory changed while the VM is not Off.
        :raises ConflictError: the new name is taken, or a job works on the VM."""
        async with self.holding(cmd.vm) as entry:
            changes = cmd.patch.config_changes()
            _check_off_only(entry, changes)
            try:
                config = type(entry.config).model_validate(entry.config.model_dump() | changes)
            except ValidationError as err:
                raise config_error(err) from None
            policy = cmd.patch.policy or entry.policy
            if "name" in changes:
                async with self.guards.inventory:
                    _check_name_free(self.registry, config.name, config.id)
                    config = await asyncio.to_thread(self.inventory.save, config)
            elif changes:
                config = await asyncio.to_thread(self.inventory.save, config)
            if cmd.patch.policy is not None:
                await asyncio.to_thread(write_policy, self.paths, config.id, policy)
            entry = self.registry.put(config, policy)
        if cmd.patch.policy is not None and _running(entry):
            await self._apply_cgroup(entry)
        if "name" in changes and _running(entry):
            await self._tell_worker_name(entry)
        self.events.publish("vm.changed", id=config.id, name=config.name)
        return VmView(config=entry.config, status=entry.status, policy=entry.policy)

    async def remove(self, cmd: RemoveVm) -> None:
        """Forget a VM (its disks stay), as Remove-VM: only at rest.

        :raises StateError: while the VM runs. :raises ConflictError: while a job works on it.
        """
        async with self.holding(cmd.vm) as entry:
            if _running(entry):
                raise StateError(
                    f"cannot remove VM {entry.config.name!r}: it is {entry.status.state}; "
                    "turn it off first"
                )
            await asyncio.to_thread(self.inventory.remove, entry.config.id)
            self.registry.drop(entry.config.id)
        self.events.publish("vm.removed", id=entry.config.id, name=entry.config.name)

    def running_count(self) -> int:
        return sum(1 for e in self.registry.entries() if _running(e))

    # -- power --------------------------------------------------------------------------------

    async def power(self, cmd: PowerVm) -> Job:
        """Check the operation is legal now, then run it as a job.

        :raises StateError: the VM's state does not allow it (nothing is started).
        :raises ConflictError: another job works on the VM, or a start the host's memory or
            processor reserves cannot honor.
        """
        async with self.holding(cmd.vm) as entry:
            transition(entry.status.state, STEPS[cmd.op].action, entry.config.name)
            if cmd.op is Power.START:
                self._admit(entry)
            vm_id = entry.config.id
            return self.submit_exclusive(vm_id, cmd.op.value, partial(self._carry_out, vm_id, cmd))

    @contextlib.asynccontextmanager
    async def holding(self, ref: str) -> AsyncIterator[VmEntry]:
        """The VM with its current status, for a change that must not overlap the VM's other
        changes (a disk, the DVD, PATCH, delete, submitting a job): it waits for the VM's other
        short changes, not for other VMs', and is refused while a job works on the VM.

        :raises NotFoundError: for an unknown VM. :raises ConflictError: while a job runs.
        """
        vm_id = self.registry.get(ref).config.id
        async with self.guards.changing(vm_id):
            # Workers write their status themselves (a guest that powered off, a VM driven by
            # other tools): decide on the state as it is now, not as the last scan saw it.
            entry = await self._sync_status(vm_id)
            self.guards.check_idle(vm_id, entry.config.name)
            yield entry

    def submit_exclusive(self, vm_id: str, operation: str, run: Operation) -> Job:
        """A job that occupies the VM until it ends: no other job or change meanwhile. Call it
        inside :meth:`holding`."""

        async def exclusive(ctx: JobContext) -> None:
            try:
                await run(ctx)
            finally:
                self.guards.vacate(vm_id, ctx.job)

        job = self.jobs.submit(operation, vm_id, exclusive)
        self.guards.occupy(vm_id, job)
        return job

    def _admit(self, entry: VmEntry) -> None:
        name = entry.config.name
        held = {
            e.config.name: reserved_cpus(e.config.processor_count, e.policy)
            for e in self.registry.entries()
            if _running(e) and e.config.id != entry.config.id
        }
        wanted = reserved_cpus(entry.config.processor_count, entry.policy)
        admit_reserve(name, wanted, self.host.cores, held)
        if entry.status.state != VmState.SAVED:
            admit_memory(name, entry.config.memory_startup_mib, self._available_memory_mib())

    async def _carry_out(self, vm_id: str, cmd: PowerVm, ctx: JobContext) -> None:
        entry = self.registry.get(vm_id)
        op, step = cmd.op, STEPS[cmd.op]
        restore = entry.status.state == VmState.SAVED
        if op is Power.START:
            launch = asyncio.to_thread(self._launch, vm_id, restore)
            await with_progress(ctx, launch, step.expected_s)
            await self.refresh()  # a checkpoint recovered first may have changed its disks
        elif op is Power.TURN_OFF and entry.status.state == VmState.SAVED:
            await asyncio.to_thread(discard_saved_state, self.paths, vm_id)
        else:
            args = {"timeout": cmd.shutdown_timeout_s} if cmd.shutdown_timeout_s else None
            await self._call_worker(ctx, entry, step, args)
        entry = await self._settle(vm_id, step)
        if entry.status.state not in step.target:
            raise not_reached(entry.config.name, op, entry.status.state, entry.status.reason)
        if op is Power.START:
            await self._apply_cgroup(entry)
            # A restored guest printed its ready line before it was saved.
            if cmd.ready_timeout_s is not None and not restore:
                await self._wait_ready(ctx, entry, cmd.ready_timeout_s)

    def _launch(self, vm_id: str, restore: bool) -> None:
        """Inside the VM's checkpoint lock, after recovery: no checkpoint operation a crash
        cut off is left half done under the guest."""
        with self.checkpoints.held(vm_id) as config:
            self.supervisor.launch(config, restore=restore)

    async def _wait_ready(self, ctx: JobContext, entry: VmEntry, timeout_s: float) -> None:
        """:raises StateError: when the guest printed no ready line in ``timeout_s``."""
        args = {"text": READY_LINE, "timeout": timeout_s}
        call = asyncio.to_thread(
            self.supervisor.call, entry.config, "wait_console", timeout_s + QUICK_OP_TIMEOUT_S, args
        )
        if not await with_progress(ctx, call, READY_EXPECTED_S):
            raise StateError(
                f"VM {entry.config.name!r} runs but its guest printed no ready line "
                f"in {timeout_s:g} s"
            )

    async def _call_worker(
        self, ctx: JobContext, entry: VmEntry, step: Step, args: dict[str, Any] | None
    ) -> None:
        assert step.worker_op is not None
        call = asyncio.to_thread(
            self.supervisor.call, entry.config, step.worker_op, OP_TIMEOUT_S, args
        )
        try:
            await with_progress(ctx, call, step.expected_s)
        except StateError:
            # A worker whose QEMU ended may close its socket before the reply is out;
            # the status it wrote last says whether the operation worked.
            if step.target - {VmState.OFF, VmState.SAVED}:
                raise
            log.info("VM %s: worker left during %s", entry.config.name, step.worker_op)

    async def _settle(self, vm_id: str, step: Step) -> VmEntry:
        """The VM's status once it reached the step's target or came to rest elsewhere."""
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT_S
        while True:
            entry = await self._sync_status(vm_id)
            state = entry.status.state
            if state in step.target or not _running(entry):
                return entry
            if asyncio.get_running_loop().time() > deadline:
                return entry
            await asyncio.sleep(SETTLE_POLL_S)

    async def _sync_status(self, vm_id: str) -> VmEntry:
        async with self._reading_status:
            status = await asyncio.to_thread(current_status, self.paths, vm_id)
            entry = self.registry.get(vm_id)
            if self.registry.set_status(vm_id, status):
                self._state_changed(entry)
        return entry

    async def _apply_cgroup(self, entry: VmEntry) -> None:
        """Best effort: a host without a writable cpu controller still runs VMs, unlimited."""
        if self.cgroups is None:
            return
        settings = cpu_settings(entry.config.processor_count, entry.policy)
        pids = self.supervisor.pids(entry.status)
        try:
            await asyncio.to_thread(self.cgroups.apply, entry.config.id, settings)
            await asyncio.to_thread(self.cgroups.attach, entry.config.id, pids)
        except OSError as err:
            log.warning("VM %s: cgroup not set: %s", entry.config.name, err)

    async def _tell_worker_name(self, entry: VmEntry) -> None:
        """A worker phrases its messages with the name the VM had at start unless told the new
        one. Best effort: the rename stands even if the worker cannot hear of it."""
        call = self.supervisor.call
        args = {"name": entry.config.name}
        try:
            await asyncio.to_thread(call, entry.config, "rename", QUICK_OP_TIMEOUT_S, args)
        except PyhvError as err:
            log.warning("VM %s: worker not told the new name: %s", entry.config.name, err)

    # -- running VMs --------------------------------------------------------------------------

    async def stats(self, ref: str) -> VmSample:
        """:raises StateError: when the VM does not run."""
        entry = self._running_entry(ref, "read statistics of")
        call = self.supervisor.call
        result = await asyncio.to_thread(call, entry.config, "stats", QUICK_OP_TIMEOUT_S)
        cpu = {"cpu_percent": float(result.get("cpu_percent") or 0.0)}
        return VmSample.model_validate(result["stats"] | cpu)

    async def attach_console(self, ref: str) -> socket.socket:
        """A socket carrying the VM's serial console both ways; the caller closes it.

        :raises StateError: when the VM does not run.
        """
        entry = self._running_entry(ref, "attach to the console of")
        return await asyncio.to_thread(self.supervisor.attach_console, entry.config)

    def console_log(self, ref: str) -> Path:
        """The VM's console log file (it may not exist yet)."""
        return self.paths.vm_console_log(self.registry.get(ref).config.id)

    async def exec(self, cmd: ExecInVm) -> ExecOutput:
        """:raises StateError: when the VM does not run or has no guest agent."""
        entry = self._running_entry(cmd.vm, "run a command in")
        args = exec_args(cmd.request)
        timeout = cmd.request.timeout_s + QUICK_OP_TIMEOUT_S
        call = self.supervisor.call
        result = await asyncio.to_thread(call, entry.config, "exec", timeout, args)
        return exec_output(result)

    def _running_entry(self, ref: str, verb: str) -> VmEntry:
        entry = self.registry.get(ref)
        if not _running(entry):
            raise StateError(
                f"cannot {verb} VM {entry.config.name!r}: it is {entry.status.state}; start it"
            )
        return entry


def _running(entry: VmEntry) -> bool:
    return entry.status.state not in (VmState.OFF, VmState.SAVED)


def _check_name_free(registry: VmRegistry, name: str, vm_id: str) -> None:
    """:raises ConfigError: a name of a VM id's form. :raises ConflictError: a name taken."""
    check_name_form(name)
    other = registry.name_taken(name, by_other_than=vm_id)
    if other is not None:
        raise ConflictError(
            f"a VM named {name!r} already exists ({other.config.id}): choose another name"
        )


def check_name_form(name: str) -> None:
    """Commands take a name or an id, ids first: a name written as VM ids are (a UUID in its
    canonical form) would reach the VM with that id, and `pyhv vm remove NAME` remove the
    wrong VM.

    :raises ConfigError: for such a name.
    """
    try:
        id_form = str(uuid.UUID(name)) == name
    except ValueError:
        id_form = False
    if id_form:
        raise ConfigError(f"VM name {name!r} has the form of a VM id: choose another name")


def _check_disks_free(registry: VmRegistry, config: VmConfig) -> None:
    """Refuse a new VM whose disk another VM's configuration attaches, as attaching one does
    (:mod:`pyhv.service.disks`).

    :raises ConflictError: naming the first such disk and where the other VM has it.
    """
    others = [e.config for e in registry.entries()]
    for _, disk in config.disks():
        refuse_users_elsewhere(others, config.id, disk.path)


def _check_off_only(entry: VmEntry, changes: dict[str, object]) -> None:
    if entry.status.state == VmState.OFF:
        return
    for field, label in _OFF_ONLY.items():
        if field in changes and changes[field] != getattr(entry.config, field):
            raise StateError(
                f"cannot change {label} of VM {entry.config.name!r}: "
                f"it is {entry.status.state}; turn it off first"
            )
