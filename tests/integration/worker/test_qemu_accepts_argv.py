"""QEMU 7.2 accepts the command lines ``build_qemu_argv`` writes: every device comes up.

Golden tests pin the text; this runs it. QEMU starts paused (``-S``), so no guest boots.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ConnectError
from qemu.qmp.legacy import QEMUMonitorProtocol

from pyhv.model import make_vm_config
from pyhv.paths import RuntimeLayout
from pyhv.worker.firmware import firmware_for
from pyhv.worker.qemu_argv import DiskWiring, build_qemu_argv

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("qemu-nbd") is None, reason="needs qemu-nbd"),
]


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[RuntimeLayout]:
    """A run directory whose NBD socket serves one 16 MiB export, ``root``, to many clients."""
    layout = RuntimeLayout(tmp_path / "run").checked()
    layout.run_dir.mkdir()
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * (16 << 20))
    server = subprocess.Popen(
        ["qemu-nbd", "-k", str(layout.nbd), "-x", "root", "-f", "raw", "-e", "8", "-t", str(image)]
    )
    try:
        wait_for(layout.nbd)
        yield layout
    finally:
        server.kill()
        server.wait()


def start(argv: list[str], run: RuntimeLayout) -> tuple[subprocess.Popen[bytes], Any]:
    qemu = subprocess.Popen(argv, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        if qemu.poll() is not None:
            err = qemu.stderr.read().decode() if qemu.stderr else ""
            pytest.fail(f"QEMU refused the argv: {err}")
        try:
            qmp = QEMUMonitorProtocol(str(run.qmp))
            qmp.connect()
            return qemu, qmp
        except (OSError, ConnectError):
            assert time.monotonic() < deadline, "QMP socket never answered"
            time.sleep(0.1)


@pytest.mark.parametrize("generation", [1, 2])
def test_all_devices_come_up(generation: int, run: RuntimeLayout, tmp_path: Path) -> None:
    iso = tmp_path / "setup.iso"
    iso.write_bytes(b"\0" * 2048 * 16)
    config = make_vm_config(
        name=f"argv, gen {generation}",
        generation=generation,
        processor_count=2,
        memory_startup_mib=64,
        scsi_controllers=[
            {"disks": [{"slot": 0, "path": "/a", "max_iops": 200, "max_bytes_per_sec": 1 << 20}]},
            {"disks": [{"slot": 9, "path": "/b", "read_only": True}]},
        ],
        dvd={"path": str(iso)},
    )
    disks = [DiskWiring(0, 0, "root"), DiskWiring(1, 9, "root", read_only=True)]
    firmware = firmware_for(generation, tmp_path / "efi-vars.fd")
    argv = build_qemu_argv(config, run, "tcg", firmware, disks=disks, start_paused=True)
    qemu, qmp = start(argv, run)
    try:
        blocks = {b["qdev"]: b.get("inserted", {}) for b in qmp.cmd("query-block")}
        assert blocks["hd0-0"]["node-name"] == "disk0-0"
        limits = qmp.cmd("qom-get", path="/objects/tg0-0", property="limits")
        assert (limits["iops-total"], limits["bps-total"]) == (200, 1 << 20)
        assert blocks["hd1-9"]["ro"] is True
        assert blocks["dvd0"]["file"].endswith("setup.iso")
        assert qmp.cmd("query-status")["status"] == "prelaunch"
        cpus = qmp.cmd("query-cpus-fast")
        assert len(cpus) == 2
        balloon = qmp.cmd("qom-list", path="/machine/peripheral/balloon0")
        assert balloon
    finally:
        qmp.close()
        qemu.kill()
        qemu.wait()
