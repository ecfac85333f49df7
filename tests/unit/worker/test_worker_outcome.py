from __future__ import annotations

from pyhv.worker.outcome import ExitFacts, exit_outcome
from pyhv.worker.process import ExitInfo, describe_exit
from pyhv.worker.states import Event


def test_guest_power_off() -> None:
    facts = ExitFacts(exit=ExitInfo(0), shutdown={"guest": True, "reason": "guest-shutdown"})
    assert exit_outcome(facts) == (Event.GUEST_SHUTDOWN, "guest shut down")


def test_quit_we_asked_for() -> None:
    facts = ExitFacts(exit=ExitInfo(0), shutdown={"reason": "host-qmp-quit"}, stop_requested=True)
    assert exit_outcome(facts) == (Event.STOPPED, "turned off")


def test_saved_wins() -> None:
    facts = ExitFacts(exit=ExitInfo(0), shutdown={"reason": "host-qmp-quit"}, saved=True)
    assert exit_outcome(facts) == (Event.SAVED, "saved")


def test_killed_without_shutdown_event_is_critical() -> None:
    assert exit_outcome(ExitFacts(exit=ExitInfo(-9))) == (
        Event.QEMU_DIED,
        "QEMU was killed by signal 9 (SIGKILL)",
    )


def test_unrequested_quit_is_unexpected() -> None:
    facts = ExitFacts(exit=ExitInfo(0), shutdown={"reason": "host-signal"})
    assert exit_outcome(facts) == (Event.QEMU_DIED, "QEMU stopped unexpectedly (host-signal)")


def test_start_error() -> None:
    facts = ExitFacts(exit=ExitInfo(1), start_error="QEMU failed to start: bad option")
    assert exit_outcome(facts) == (Event.START_FAILED, "QEMU failed to start: bad option")


def test_failed_restore_keeps_the_saved_state() -> None:
    facts = ExitFacts(exit=ExitInfo(1), start_error="bad stream", restoring=True)
    event, reason = exit_outcome(facts)
    assert event == Event.RESTORE_FAILED
    assert reason.startswith("bad stream; the saved state is kept: ")
    assert "turn the VM off to discard it" in reason


def test_describe_exit_code_with_tail() -> None:
    assert describe_exit(ExitInfo(1), "oops") == "QEMU exited with code 1: oops"
