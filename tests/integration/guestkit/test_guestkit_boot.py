"""Boot the guest kit with plain QEMU (no pyhv worker) under TCG and check what it promises:
root on the VHDX behind virtio-scsi, the ready line, a working guest agent, a clean ACPI
power-off; and, without any disk, the same ready line from the initramfs alone.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyhv.guestkit import READY_LINE, KitPaths, build_kit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU"),
]

BOOT_TIMEOUT = 120.0
_EXT4_INCOMPAT_RECOVER = 0x4  # journal needs replay: the file system was not unmounted cleanly


@pytest.fixture(scope="module")
def kit() -> KitPaths:
    return build_kit()


class LineSocket:
    """JSON lines over a unix socket, as both QMP and the guest agent speak them."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")

    def send(self, command: str, **arguments: Any) -> None:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.file.write(json.dumps(message).encode() + b"\n")
        self.file.flush()

    def receive(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise EOFError("socket closed")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Guest:
    def __init__(self, kit: KitPaths, workdir: Path, disk: Path | None) -> None:
        self.console = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        self.qga_path = workdir / "qga.sock"
        self.serial_path = workdir / "serial.sock"
        self.disk = disk
        argv = [
            "qemu-system-x86_64",
            *("-M", "q35", "-accel", "tcg", "-m", "512", "-smp", "2"),
            *("-nodefaults", "-no-user-config", "-display", "none"),
            *(
                "-chardev",
                f"socket,id=ser0,path={self.serial_path},server=on,wait=off,logfile={self.console}",
            ),
            *("-serial", "chardev:ser0"),
            *("-kernel", str(kit.kernel), "-initrd", str(kit.initrd), "-append", kit.cmdline),
            *("-qmp", f"unix:{self.qmp_path},server=on,wait=off"),
            *("-chardev", f"socket,path={self.qga_path},server=on,wait=off,id=qga0"),
            *("-device", "virtio-serial-pci"),
            *("-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"),
        ]
        if disk is not None:
            argv += [
                *(
                    "-blockdev",
                    f"driver=vhdx,file.driver=file,file.filename={disk},node-name=root0",
                ),
                *("-device", "virtio-scsi-pci,id=scsi0"),
                *("-device", "scsi-hd,bus=scsi0.0,scsi-id=0,lun=0,drive=root0"),
            ]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_for(self, text: str, timeout: float = BOOT_TIMEOUT) -> float:
        """Seconds from QEMU's start until ``text`` is on the console."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not on the console; console:\n{self.log()}")

    def type_on_console(self, line: str) -> None:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(self.serial_path))
            conn.sendall(line.encode() + b"\n")
            time.sleep(0.5)  # let QEMU read it before the connection goes

    def qmp(self) -> LineSocket:
        conn = LineSocket(self.qmp_path)
        assert "QMP" in conn.receive()
        conn.send("qmp_capabilities")
        assert conn.receive() == {"return": {}}
        return conn

    def agent(self) -> LineSocket:
        """A guest agent connection, past stale replies: ``guest-sync`` until our id returns."""
        conn = LineSocket(self.qga_path)
        sync_id = int(time.time() * 1000) % 2**31
        conn.send("guest-sync", id=sync_id)
        while conn.receive().get("return") != sync_id:
            pass
        return conn

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def guest_factory(kit: KitPaths, tmp_path: Path) -> Iterator[Any]:
    guests: list[Guest] = []

    def start(with_disk: bool) -> Guest:
        disk = None
        if with_disk:
            disk = tmp_path / "rootdisk.vhdx"
            shutil.copyfile(kit.rootdisk, disk)
        guest = Guest(kit, tmp_path, disk)
        guests.append(guest)
        return guest

    yield start
    for guest in guests:
        guest.stop()


def journal_needs_recovery(disk: Path) -> bool:
    from pyhv.storage import open_image

    with open_image(disk) as image:
        superblock = image.read(1024, 1024)
    assert superblock[0x38:0x3A] == b"\x53\xef", "no ext4 superblock on the root disk"
    return bool(struct.unpack_from("<I", superblock, 0x60)[0] & _EXT4_INCOMPAT_RECOVER)


def test_boots_from_vhdx_runs_agent_and_powers_off_cleanly(guest_factory: Any) -> None:
    guest = guest_factory(with_disk=True)
    seconds = guest.wait_for(READY_LINE)
    print(f"boot to {READY_LINE} with root on VHDX: {seconds:.1f} s")
    assert "pyhv-guest: root=/dev/sda fstype=ext4" in guest.log()

    agent = guest.agent()
    agent.send("guest-ping")
    assert agent.receive() == {"return": {}}
    agent.send("guest-exec", path="/bin/sh", arg=["-c", "echo hi"], **{"capture-output": True})
    pid = agent.receive()["return"]["pid"]
    deadline = time.monotonic() + 30
    while True:
        agent.send("guest-exec-status", pid=pid)
        status = agent.receive()["return"]
        if status["exited"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["exitcode"] == 0
    assert base64.b64decode(status["out-data"]) == b"hi\n"
    agent.close()

    qmp = guest.qmp()
    qmp.send("system_powerdown")
    shutdown = None
    while shutdown is None:
        message = qmp.receive()
        if message.get("event") == "SHUTDOWN":
            shutdown = message["data"]
    assert shutdown == {"guest": True, "reason": "guest-shutdown"}
    assert guest.proc.wait(timeout=60) == 0
    assert "pyhv-guest: root file system clean" in guest.log()
    assert not journal_needs_recovery(guest.disk)


def test_without_a_disk_the_initramfs_runs_the_same_init(guest_factory: Any) -> None:
    guest = guest_factory(with_disk=False)
    seconds = guest.wait_for(READY_LINE)
    print(f"boot to {READY_LINE} without a disk: {seconds:.1f} s")
    assert "staying in the initramfs" in guest.log()
    assert "agent on /dev/vport" in guest.log()
    # The shell starts just after the ready line; input sent before it runs is lost, so retry.
    deadline = time.monotonic() + 60
    while "console-42" not in guest.log():
        assert time.monotonic() < deadline, f"no shell on the console:\n{guest.log()}"
        guest.type_on_console("echo console-$((6 * 7))")
        time.sleep(1)
    qmp = guest.qmp()
    qmp.send("quit")
    assert guest.proc.wait(timeout=60) == 0
