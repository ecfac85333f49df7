"""The VM state machine, pure: which request or QEMU event is legal in which state, and where
it leads. The worker asks before acting and records the result; nothing here does I/O.

User actions move the VM into the state that lasts while the worker carries them out
(start → Starting); events report how that ended (started → Running) or what QEMU did on
its own (guest shut down → Off, QEMU died → Off + Critical).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pyhv.errors import StateError
from pyhv.model import VmState, VmStatus

OFF, STARTING, RUNNING, PAUSED = VmState.OFF, VmState.STARTING, VmState.RUNNING, VmState.PAUSED
SAVING, SAVED, STOPPING = VmState.SAVING, VmState.SAVED, VmState.STOPPING


class Action(StrEnum):
    """What a user asks for."""

    START = "start"
    SHUTDOWN = "shutdown"
    TURN_OFF = "turn_off"
    SAVE = "save"
    PAUSE = "pause"
    RESUME = "resume"
    RESET = "reset"
    RESTORE = "restore"
    APPLY = "apply"  # a checkpoint's memory replaces the running guest (a new QEMU)


class Event(StrEnum):
    """What the worker observes."""

    STARTED = "started"  # QEMU runs the guest (after a boot or a restore)
    STARTED_PAUSED = "started_paused"  # restored a VM that was saved while Paused
    START_FAILED = "start_failed"
    RESTORE_FAILED = "restore_failed"  # the saved state is kept: start again or turn off
    SAVED = "saved"  # the saved state is complete; QEMU has exited
    SAVE_FAILED = "save_failed"  # QEMU still runs the guest
    STOPPED = "stopped"  # QEMU exited because we asked it to
    GUEST_SHUTDOWN = "guest_shutdown"
    QEMU_DIED = "qemu_died"


_VERBS = {
    Action.START: "start",
    Action.SHUTDOWN: "shut down",
    Action.TURN_OFF: "turn off",
    Action.SAVE: "save",
    Action.PAUSE: "pause",
    Action.RESUME: "resume",
    Action.RESET: "reset",
    Action.RESTORE: "restore",
    Action.APPLY: "apply a checkpoint to",
}

_ALIVE = (STARTING, RUNNING, PAUSED, SAVING, STOPPING)

_TABLE: dict[Action | Event, dict[VmState, VmState]] = {
    # Starting a Saved VM restores it, as Start-VM does in Hyper-V.
    Action.START: {OFF: STARTING, SAVED: STARTING},
    Action.RESTORE: {SAVED: STARTING},
    # Applying a checkpoint with memory to a live VM starts a new QEMU from that memory.
    Action.APPLY: {RUNNING: STARTING, PAUSED: STARTING},
    Action.SHUTDOWN: {RUNNING: STOPPING},
    # Turning off a Saved VM discards its saved state.
    Action.TURN_OFF: {s: STOPPING for s in _ALIVE} | {SAVED: OFF},
    Action.SAVE: {RUNNING: SAVING, PAUSED: SAVING},
    Action.PAUSE: {RUNNING: PAUSED},
    Action.RESUME: {PAUSED: RUNNING},
    Action.RESET: {RUNNING: RUNNING, PAUSED: RUNNING},
    Event.STARTED: {STARTING: RUNNING},
    Event.STARTED_PAUSED: {STARTING: PAUSED},
    Event.START_FAILED: {STARTING: OFF},
    # Like Hyper-V, a restore that fails keeps the saved state; turning off discards it.
    Event.RESTORE_FAILED: {STARTING: SAVED},
    Event.SAVED: {SAVING: SAVED},
    Event.SAVE_FAILED: {SAVING: RUNNING},
    Event.STOPPED: {STOPPING: OFF, SAVING: OFF},
    Event.GUEST_SHUTDOWN: {RUNNING: OFF, PAUSED: OFF, STOPPING: OFF, STARTING: OFF},
    Event.QEMU_DIED: {s: OFF for s in _ALIVE},
}

# Why a user's request does not apply, for the common mistakes.
_HINTS: dict[tuple[Action, VmState], str] = {
    (Action.START, RUNNING): "it is already Running",
    (Action.START, PAUSED): "it is Paused; resume it instead",
    (Action.SHUTDOWN, PAUSED): "it is Paused and cannot answer the power button; resume it "
    "or turn it off",
    (Action.RESTORE, OFF): "it is Off and has no saved state; start it instead",
    (Action.RESUME, RUNNING): "it is already Running",
    (Action.PAUSE, PAUSED): "it is already Paused",
}

_CRITICAL = {Event.QEMU_DIED, Event.START_FAILED, Event.RESTORE_FAILED}
_REASONS: dict[Action | Event, str] = {
    Event.GUEST_SHUTDOWN: "guest shut down",
    Event.SAVED: "saved",
    Event.STOPPED: "turned off",
}


def transition(state: VmState, action: Action | Event, vm_name: str) -> VmState:
    """The state ``action`` leads to from ``state``.

    :raises StateError: "cannot pause VM 'x': it is Off" when it is not legal there.
    """
    nxt = _TABLE[action].get(state)
    if nxt is not None:
        return nxt
    if isinstance(action, Action):
        why = _HINTS.get((action, state), f"it is {state}")
        raise StateError(f"cannot {_VERBS[action]} VM {vm_name!r}: {why}")
    raise StateError(f"VM {vm_name!r}: unexpected event {action} while {state}")


def next_status(
    status: VmStatus,
    action: Action | Event,
    *,
    vm_name: str,
    now: datetime,
    reason: str | None = None,
) -> VmStatus:
    """The status after ``action``: Critical is set when QEMU died or failed to start and
    cleared by the next start; ``reason`` defaults to a standard wording for the event.

    :raises StateError: as ``transition``.
    """
    state = transition(status.state, action, vm_name)
    if action in _CRITICAL:
        critical = True
    elif action in (Action.START, Action.RESTORE, Action.TURN_OFF):
        critical = False
    else:
        critical = status.critical
    return status.model_copy(
        update={
            "state": state,
            "critical": critical,
            "reason": reason if reason is not None else _REASONS.get(action),
            "since": now,
        }
    )
