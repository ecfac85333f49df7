"""Killing QEMU or the worker with SIGKILL: the VM ends Off + Critical and nothing is left over.

The guest need not finish booting for this, so the tests do not wait for its ready line.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from pyhv.model import VmState, VmStatus
from pyhv.worker.local import LocalHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "victim"


def wait_status(
    host: LocalHost, check: Callable[[VmStatus], bool], timeout: float = 30
) -> VmStatus:
    deadline = time.monotonic() + timeout
    status = host.status(host.get(NAME))
    while not check(status) and time.monotonic() < deadline:
        time.sleep(0.1)
        status = host.status(host.get(NAME))
    return status


@pytest.fixture(scope="module")
def vm(host: LocalHost, make_vm: Callable[..., str]) -> str:
    return make_vm(NAME)


def test_kill_qemu_gives_off_critical(
    host: LocalHost, vm: str, wait_gone: Callable[..., bool]
) -> None:
    status = host.start(vm)
    assert status.state == VmState.RUNNING and status.qemu_pid and status.worker_pid
    os.kill(status.qemu_pid, signal.SIGKILL)
    final = wait_status(host, lambda s: s.state == VmState.OFF)
    assert final.critical
    assert final.reason == "QEMU was killed by signal 9 (SIGKILL)"
    assert wait_gone(status.worker_pid)
    assert not host.paths.run_dir(host.get(vm).id).exists()


def test_kill_worker_takes_qemu_along(
    host: LocalHost, vm: str, wait_gone: Callable[..., bool]
) -> None:
    status = host.start(vm)
    assert status.state == VmState.RUNNING and status.qemu_pid and status.worker_pid
    os.kill(status.worker_pid, signal.SIGKILL)
    assert wait_gone(status.qemu_pid, 10), "QEMU outlived its worker"
    final = wait_status(host, lambda s: s.state == VmState.OFF)
    assert (final.state, final.critical, final.reason) == (VmState.OFF, True, "worker died")
    assert not host.paths.run_dir(host.get(vm).id).exists()
    assert host.start(vm).state == VmState.RUNNING  # the leftovers do not block a new start
    assert host.turn_off(vm).state == VmState.OFF
