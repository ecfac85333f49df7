"""The disk and DVD routes' rights on the TCP listener: a reader only lists, an operator also
changes the DVD medium, attaching, detaching and QoS of disks need admin; a refusal changes
nothing. No guest boots here."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from pyhvd_harness import Pyhvd, new_pyhvd, stop_leftover_workers

from pyhv.client import PyhvClient
from pyhv.errors import PermissionDenied
from pyhv.model import VmConfig
from pyhv.service.schemas import DiskAdd, DiskQos
from pyhv.storage import CreateSpec, create_image
from pyhv.units import MiB

pytestmark = pytest.mark.integration

TOKENS = {"admin": "a" * 32, "operator": "o" * 32, "reader": "r" * 32}


@pytest.fixture(scope="module")
def pyhvd() -> Iterator[Pyhvd]:
    d = new_pyhvd(tcp=True)
    entries = [{"name": f"{role}-user", "role": role, "token": t} for role, t in TOKENS.items()]
    (d.home / "tokens.json").write_text(json.dumps({"tokens": entries}))
    create_image(d.home / "disks" / "data.vhdx", CreateSpec(size=4 * MiB))
    (d.home / "disks" / "setup.iso").write_bytes(bytes(2048))
    d.start()
    d.client().create_vm(VmConfig(name="vm1", memory_startup_mib=64))
    yield d
    for c in d.clients:
        c.close()
    d.stop()
    stop_leftover_workers(d)
    shutil.rmtree(d.home, ignore_errors=True)


def client(d: Pyhvd, role: str) -> PyhvClient:
    return d.tcp_client(TOKENS[role])


def test_reader_lists_only(pyhvd: Pyhvd) -> None:
    reader = client(pyhvd, "reader")
    assert reader.disks("vm1").disks == []
    data = str(pyhvd.home / "disks" / "data.vhdx")
    with pytest.raises(PermissionDenied, match="role reader"):
        reader.add_disk("vm1", DiskAdd(path=data))
    with pytest.raises(PermissionDenied, match="role reader"):
        reader.insert_dvd("vm1", pyhvd.home / "disks" / "setup.iso")
    assert pyhvd.client().get_vm("vm1").config.dvd is None


def test_operator_changes_the_dvd_but_not_the_disks(pyhvd: Pyhvd) -> None:
    operator = client(pyhvd, "operator")
    iso = pyhvd.home / "disks" / "setup.iso"
    assert operator.insert_dvd("vm1", iso).path == iso.resolve()
    assert operator.eject_dvd("vm1").path is None
    with pytest.raises(PermissionDenied, match="role operator"):
        operator.add_disk("vm1", DiskAdd(path=str(pyhvd.home / "disks" / "data.vhdx")))
    assert pyhvd.client().get_vm("vm1").config.disks() == []


def test_admin_attaches_sets_qos_and_detaches(pyhvd: Pyhvd) -> None:
    admin, operator = client(pyhvd, "admin"), client(pyhvd, "operator")
    added = admin.add_disk("vm1", DiskAdd(path=str(pyhvd.home / "disks" / "data.vhdx")))
    assert (added.controller, added.slot) == (0, 0)
    with pytest.raises(PermissionDenied, match="role operator"):
        operator.set_disk_qos("vm1", 0, 0, DiskQos(max_iops=10))
    with pytest.raises(PermissionDenied, match="role operator"):
        operator.remove_disk("vm1", 0, 0)
    assert admin.set_disk_qos("vm1", 0, 0, DiskQos(max_iops=10)).disk.max_iops == 10
    row = operator.disks("vm1").disks[0]
    assert (row.disk.max_iops, row.info is not None and row.info.size) == (10, 4 * MiB)
    assert admin.remove_disk("vm1", 0, 0).disk.path == added.disk.path
    assert pyhvd.client().get_vm("vm1").config.disks() == []
