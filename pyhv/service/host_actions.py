"""What happens to the VMs when the host goes down through pyhvd: each VM's automatic stop
action (save, shut down or turn off), all VMs at once, as one job."""

from __future__ import annotations

import logging

from pyhv.errors import PyhvError, StateError
from pyhv.model import AutomaticStopAction, VmState
from pyhv.service.commands import Power, PowerVm
from pyhv.service.jobs import Job, JobContext, JobState
from pyhv.service.manager import VmManager

log = logging.getLogger(__name__)

STOP_OPS = {
    AutomaticStopAction.SAVE: Power.SAVE,
    AutomaticStopAction.SHUTDOWN: Power.STOP,
    AutomaticStopAction.TURN_OFF: Power.TURN_OFF,
}


def stop_op(action: AutomaticStopAction, state: VmState) -> Power:
    """A Paused guest cannot answer the power button: it is turned off instead."""
    op = STOP_OPS[action]
    return Power.TURN_OFF if op is Power.STOP and state == VmState.PAUSED else op


def stop_all_vms(manager: VmManager) -> Job:
    """:raises StateError: (in the job) naming the VMs that did not stop."""

    async def run(ctx: JobContext) -> None:
        started: list[tuple[str, Job]] = []
        failed: list[str] = []
        for entry in manager.registry.entries():
            if entry.status.state in (VmState.OFF, VmState.SAVED):
                continue
            op = stop_op(entry.config.automatic_stop_action, entry.status.state)
            try:
                job = await manager.power(PowerVm(entry.config.id, op))
            except PyhvError as err:
                log.warning("VM %s: automatic stop action refused: %s", entry.config.name, err)
                failed.append(entry.config.name)
                continue
            started.append((entry.config.name, job))
        for done, (name, job) in enumerate(started, 1):
            if (await manager.jobs.wait(job.id)).state != JobState.COMPLETED:
                failed.append(name)
            ctx.progress(100 * done // len(started))
        if failed:
            raise StateError(f"{len(failed)} VMs did not stop: {', '.join(failed)}; see GET /jobs")

    return manager.jobs.submit("stop-all-vms", None, run)
