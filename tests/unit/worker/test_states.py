from datetime import UTC, datetime

import pytest

from pyhv.errors import StateError
from pyhv.model import VmState, VmStatus
from pyhv.worker.states import Action, Event, next_status, transition

S = VmState
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "action", "expected"),
    [
        (S.OFF, Action.START, S.STARTING),
        (S.STARTING, Event.STARTED, S.RUNNING),
        (S.RUNNING, Action.PAUSE, S.PAUSED),
        (S.PAUSED, Action.RESUME, S.RUNNING),
        (S.RUNNING, Action.RESET, S.RUNNING),
        (S.RUNNING, Action.SHUTDOWN, S.STOPPING),
        (S.STOPPING, Event.GUEST_SHUTDOWN, S.OFF),
        (S.RUNNING, Event.GUEST_SHUTDOWN, S.OFF),
        (S.PAUSED, Action.TURN_OFF, S.STOPPING),
        (S.STOPPING, Event.STOPPED, S.OFF),
        (S.RUNNING, Action.SAVE, S.SAVING),
        (S.PAUSED, Action.SAVE, S.SAVING),
        (S.SAVING, Event.SAVED, S.SAVED),
        (S.SAVING, Event.SAVE_FAILED, S.RUNNING),
        (S.SAVED, Action.START, S.STARTING),
        (S.SAVED, Action.RESTORE, S.STARTING),
        (S.SAVED, Action.TURN_OFF, S.OFF),
        (S.RUNNING, Event.QEMU_DIED, S.OFF),
        (S.STARTING, Event.START_FAILED, S.OFF),
        (S.STARTING, Event.STARTED_PAUSED, S.PAUSED),
        (S.STARTING, Event.RESTORE_FAILED, S.SAVED),
    ],
)
def test_legal(state: VmState, action: Action | Event, expected: VmState) -> None:
    assert transition(state, action, "vm") == expected


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        (S.OFF, Action.PAUSE, "cannot pause VM 'web': it is Off"),
        (S.RUNNING, Action.START, "cannot start VM 'web': it is already Running"),
        (S.PAUSED, Action.SHUTDOWN, "cannot shut down VM 'web': it is Paused and cannot"),
        (S.OFF, Action.TURN_OFF, "cannot turn off VM 'web': it is Off"),
        (S.OFF, Action.RESTORE, "has no saved state; start it instead"),
        (S.SAVED, Action.RESUME, "cannot resume VM 'web': it is Saved"),
        (S.SAVING, Action.PAUSE, "cannot pause VM 'web': it is Saving"),
        (S.OFF, Event.QEMU_DIED, "VM 'web': unexpected event qemu_died while Off"),
    ],
)
def test_illegal(state: VmState, action: Action | Event, message: str) -> None:
    with pytest.raises(StateError) as info:
        transition(state, action, "web")
    assert message in str(info.value)


def test_every_state_reaches_off() -> None:
    """No state is a dead end: some action or event always leads back to Off."""
    for state in S:
        if state == S.OFF:
            continue
        routes = [a for a in (*Action, *Event) if _legal(state, a)]
        assert any(transition(state, a, "vm") in (S.OFF, S.STOPPING) for a in routes), state


def _legal(state: VmState, action: Action | Event) -> bool:
    try:
        transition(state, action, "vm")
    except StateError:
        return False
    return True


def test_critical_is_set_by_a_crash_and_cleared_by_the_next_start() -> None:
    running = VmStatus(state=S.RUNNING)
    dead = next_status(running, Event.QEMU_DIED, vm_name="v", now=NOW, reason="killed by SIGKILL")
    assert (dead.state, dead.critical, dead.reason, dead.since) == (
        S.OFF,
        True,
        "killed by SIGKILL",
        NOW,
    )
    assert dead.display_state == "Off-Critical"
    again = next_status(dead, Action.START, vm_name="v", now=NOW)
    assert (again.state, again.critical, again.reason) == (S.STARTING, False, None)


def test_guest_shutdown_reason() -> None:
    off = next_status(VmStatus(state=S.RUNNING), Event.GUEST_SHUTDOWN, vm_name="v", now=NOW)
    assert (off.state, off.critical, off.reason) == (S.OFF, False, "guest shut down")


def test_failed_restore_stays_saved_critical_until_turned_off() -> None:
    starting = next_status(VmStatus(state=S.SAVED), Action.START, vm_name="v", now=NOW)
    failed = next_status(starting, Event.RESTORE_FAILED, vm_name="v", now=NOW, reason="corrupt")
    assert (failed.display_state, failed.reason) == ("Saved-Critical", "corrupt")
    off = next_status(failed, Action.TURN_OFF, vm_name="v", now=NOW)
    assert off.display_state == "Off"
