"""Why QEMU ended, decided from what the worker saw: a pure function, so every case is tested.

QEMU announces every orderly exit with a SHUTDOWN event (``guest-shutdown`` when the guest
powered off, ``host-qmp-quit`` when we quit it); an exit without one means it was killed or
crashed, which Hyper-V shows as Critical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyhv.worker.process import ExitInfo, describe_exit
from pyhv.worker.states import Event


@dataclass
class ExitFacts:
    exit: ExitInfo | None = None
    shutdown: dict[str, Any] | None = None  # data of the last SHUTDOWN event
    saved: bool = False  # the saved state file is complete
    stop_requested: bool = False  # turn off / shut down / save asked QEMU to quit
    start_error: str | None = None
    restoring: bool = False  # starting from a saved state that is still on disk
    qemu_tail: str = ""  # last line QEMU printed


def restore_failed(error: str) -> str:
    return f"{error}; the saved state is kept: start again, or turn the VM off to discard it"


def exit_outcome(facts: ExitFacts) -> tuple[Event, str]:
    """The state-machine event and the reason to record once QEMU is gone."""
    if facts.start_error is not None:
        if facts.restoring:
            return Event.RESTORE_FAILED, restore_failed(facts.start_error)
        return Event.START_FAILED, facts.start_error
    if facts.saved:
        return Event.SAVED, "saved"
    shutdown = facts.shutdown
    if shutdown is not None:
        if shutdown.get("reason") == "guest-shutdown":
            return Event.GUEST_SHUTDOWN, "guest shut down"
        if facts.stop_requested:
            return Event.STOPPED, "turned off"
        return Event.QEMU_DIED, f"QEMU stopped unexpectedly ({shutdown.get('reason', 'unknown')})"
    if facts.stop_requested:
        return Event.STOPPED, "turned off"
    exit_info = facts.exit or ExitInfo(0)
    return Event.QEMU_DIED, describe_exit(exit_info, facts.qemu_tail)
