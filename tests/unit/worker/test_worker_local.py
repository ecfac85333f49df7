"""Requests on VMs without a worker: refused or handled from the files alone."""

from __future__ import annotations

import pytest

from pyhv.errors import StateError
from pyhv.model import VmConfig, VmState, VmStatus
from pyhv.paths import HomePaths
from pyhv.worker.local import LocalHost
from pyhv.worker.status_file import write_status


@pytest.fixture
def host(paths: HomePaths) -> LocalHost:
    local = LocalHost(paths)
    local.inventory.create(VmConfig(name="idle"))
    return local


def test_requests_on_an_off_vm_are_refused(host: LocalHost) -> None:
    with pytest.raises(StateError, match="cannot pause VM 'idle': it is Off"):
        host.pause("idle")
    with pytest.raises(StateError, match="cannot turn off VM 'idle': it is Off"):
        host.turn_off("idle")
    with pytest.raises(StateError, match="cannot run a command in VM 'idle': it is Off"):
        host.exec("idle", ["true"])
    assert host.sample(host.get("idle")) is None


def test_turning_off_a_saved_vm_discards_its_state(host: LocalHost) -> None:
    config = host.get("idle")
    saved = host.paths.vm_saved_state(config.id)
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"memory")
    write_status(host.paths.vm_status(config.id), VmStatus(state=VmState.SAVED))
    status = host.turn_off("idle")
    assert (status.state, status.reason) == (VmState.OFF, "saved state discarded")
    assert not saved.exists()
    assert host.status(config).state == VmState.OFF


def test_remove_keeps_nothing_but_disks(host: LocalHost) -> None:
    assert host.remove("idle").name == "idle"
    assert host.inventory.list() == []
