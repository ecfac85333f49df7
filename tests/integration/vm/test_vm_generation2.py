"""A generation-2 (UEFI, OVMF) guest with direct kernel boot: boots, runs commands, turns off."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pyhv.guestkit import READY_LINE
from pyhv.model import VmState
from pyhv.worker.local import LocalHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_generation2_boots_and_turns_off(
    host: LocalHost, make_vm: Callable[..., str], wait_gone: Callable[..., bool]
) -> None:
    name = make_vm("gen2", generation=2)
    host.start(name, wait_ready_s=240)
    config = host.get(name)
    assert READY_LINE in host.paths.vm_console_log(config.id).read_text(errors="replace")
    assert host.paths.vm_efi_vars(config.id).exists()
    result = host.exec(name, ["sh", "-c", "ls /sys/firmware/efi >/dev/null && echo uefi"])
    assert result.stdout == b"uefi\n"
    qemu_pid = host.status(config).qemu_pid
    assert qemu_pid is not None
    status = host.turn_off(name)
    assert (status.state, status.reason, status.critical) == (VmState.OFF, "turned off", False)
    assert wait_gone(qemu_pid)
