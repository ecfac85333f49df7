"""How each power operation is carried out once the manager has allowed it: the job's body.

Start launches a worker; every other operation is one control op on the running worker. Either
way the job ends when the VM's recorded state reaches the operation's target, and fails with
the worker's reason when the VM came to rest anywhere else.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyhv.errors import StateError
from pyhv.model import VmState
from pyhv.service.commands import Power
from pyhv.service.jobs import JobContext
from pyhv.service.schemas import ExecOutput, ExecRequest
from pyhv.worker.states import Action

T = TypeVar("T")

PROGRESS_TICK_S = 0.25
# Ops that end QEMU answer only once it is gone (a shutdown waits up to the worker's timeout).
OP_TIMEOUT_S = 600.0
QUICK_OP_TIMEOUT_S = 30.0
READY_EXPECTED_S = 10.0  # from Running to the guest kit's ready line, under TCG
_OFF, _RUNNING, _PAUSED, _SAVED = VmState.OFF, VmState.RUNNING, VmState.PAUSED, VmState.SAVED


@dataclass(frozen=True)
class Step:
    action: Action  # checked against the state machine before the job starts
    worker_op: str | None  # None: not a worker op (start launches a worker)
    target: frozenset[VmState]
    expected_s: float  # for the progress estimate only


STEPS = {
    # From Saved, a VM saved while Paused comes back Paused.
    Power.START: Step(Action.START, None, frozenset({_RUNNING, _PAUSED}), 5.0),
    Power.STOP: Step(Action.SHUTDOWN, "shutdown", frozenset({_OFF}), 10.0),
    Power.TURN_OFF: Step(Action.TURN_OFF, "turn_off", frozenset({_OFF}), 1.0),
    Power.SAVE: Step(Action.SAVE, "save", frozenset({_SAVED}), 5.0),
    Power.PAUSE: Step(Action.PAUSE, "pause", frozenset({_PAUSED}), 0.5),
    Power.RESUME: Step(Action.RESUME, "resume", frozenset({_RUNNING}), 0.5),
    Power.RESTART: Step(Action.RESET, "reset", frozenset({_RUNNING}), 0.5),
}


async def with_progress(ctx: JobContext, work: Awaitable[T], expected_s: float) -> T:
    """Await ``work`` while the job's progress creeps towards 95 % on an estimate.

    Progress is a guess (the worker reports no steps); it only shows the job is alive.
    """
    task = asyncio.ensure_future(work)
    elapsed = 0.0
    start = ctx.job.progress
    while True:
        done, _ = await asyncio.wait({task}, timeout=PROGRESS_TICK_S)
        if done:
            return task.result()
        elapsed += PROGRESS_TICK_S
        share = elapsed / (elapsed + expected_s)
        ctx.progress(start + int((95 - start) * share))


def not_reached(name: str, op: Power, state: VmState, reason: str | None) -> StateError:
    why = f" ({reason})" if reason else ""
    return StateError(f"could not {op.value} VM {name!r}: it is {state}{why}")


def exec_args(request: ExecRequest) -> dict[str, Any]:
    args: dict[str, Any] = {"argv": request.argv, "timeout": request.timeout_s}
    if request.stdin:
        args["stdin"] = base64.b64encode(request.stdin.encode()).decode()
    return args


def exec_output(result: dict[str, object]) -> ExecOutput:
    def text(key: str) -> str:
        return base64.b64decode(str(result.get(key) or "")).decode("utf-8", "replace")

    sig = result.get("signal")
    return ExecOutput(
        exit_code=int(str(result["exit_code"])),
        stdout=text("stdout"),
        stderr=text("stderr"),
        signal=int(str(sig)) if sig is not None else None,
    )
