"""VM start time: ``pyhv vm start --wait-ready`` against a plain qemu-system-x86_64, same run.

Both boot the guest kit (1 vCPU, 512 MiB, q35, TCG, root disk on virtio-scsi) to its ready
line. The peer is the worker's own QEMU command line with the disk opened by QEMU's vhdx driver
instead of pyhv's NBD provider, serial on stdio and no ``-S``. Three runs each, interleaved;
prints the medians, their ratio (goal ≤ 1.1) and the worker's resident memory without QEMU
(goal ≤ 40 MB). Asserts nothing.

    .venv/bin/python bench/vm_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pyhv.guestkit import READY_LINE, KitPaths, build_kit
from pyhv.host.hugepages import large_pages
from pyhv.inventory import Inventory
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, VmConfig, make_vm_config
from pyhv.paths import HomePaths, RuntimeLayout
from pyhv.service.child import child_pyhvd
from pyhv.worker.disks import export_name
from pyhv.worker.firmware import firmware_for
from pyhv.worker.qemu_argv import DiskWiring, build_qemu_argv
from pyhv.worker.status_file import read_status_file

PYHV = str(Path(sys.executable).with_name("pyhv"))
TIMEOUT_S = 180


def plain_argv(config: VmConfig, run_dir: Path, efi_vars: Path, driver: str = "vhdx") -> list[str]:
    """The worker's argv with the NBD node of the first disk replaced by QEMU's own ``driver``
    on that disk's file (same node name, so the throttle node above it stays) and the console
    on stdout; its RAM on the pages the worker would choose now."""
    wiring = DiskWiring(0, 0, export_name(0, 0))
    large = large_pages(config.name, config.memory_startup_mib, config.memory_hugepages)
    argv = build_qemu_argv(
        config,
        RuntimeLayout(run_dir),
        "tcg",
        firmware_for(1, efi_vars),
        disks=[wiring],
        large_pages=large,
    )
    disk = config.disks()[0][1].path
    out: list[str] = []
    for arg in argv:
        if arg.startswith("driver=nbd,"):
            node = dict(kv.split("=", 1) for kv in arg.split(","))["node-name"]
            arg = f"driver={driver},node-name={node},file.driver=file,file.filename={disk}"
        elif arg.startswith("socket,id=com1,"):
            arg = "stdio,id=com1,signal=off"
        out.append(arg)
    return out


def time_plain(argv: list[str]) -> float:
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        seen = b""
        while READY_LINE.encode() not in seen:
            chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk or time.monotonic() - started > TIMEOUT_S:
                raise SystemExit("plain QEMU never printed the ready line")
            seen = seen[-256:] + chunk
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()


def time_pyhv(env: dict[str, str], paths: HomePaths, config: VmConfig) -> tuple[float, int, int]:
    """Seconds to the ready line, and the worker's RSS and USS in bytes while the VM runs."""
    started = time.monotonic()
    subprocess.run([PYHV, "vm", "start", config.name, "--wait-ready"], env=env, check=True)
    elapsed = time.monotonic() - started
    status = read_status_file(paths.vm_status(config.id))
    assert status is not None and status.worker_pid is not None
    memory = psutil.Process(status.worker_pid).memory_full_info()
    subprocess.run(
        [PYHV, "vm", "stop", config.name, "--turn-off"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return elapsed, memory.rss, memory.uss


def make_vm(paths: HomePaths, kit: KitPaths, disk: Path) -> VmConfig:
    config = make_vm_config(
        name="bench",
        processor_count=1,
        memory_startup_mib=512,
        kernel=KernelBoot(kernel=kit.kernel, initrd=kit.initrd, cmdline=kit.cmdline),
        scsi_controllers=[ScsiController(disks=[DiskAttachment(slot=0, path=disk)])],
    )
    return Inventory(paths).create(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    kit = build_kit()
    home = Path(tempfile.mkdtemp(prefix="pyhvb", dir="/tmp"))
    try:
        paths = HomePaths(home)
        disk = home / "root.vhdx"
        peer_disk = home / "peer.vhdx"
        shutil.copyfile(kit.rootdisk, disk)
        shutil.copyfile(kit.rootdisk, peer_disk)
        config = make_vm(paths, kit, disk)
        peer = config.model_copy(
            update={
                "scsi_controllers": [ScsiController(disks=[DiskAttachment(slot=0, path=peer_disk)])]
            }
        )
        argv = plain_argv(peer, home / "peer", home / "peer-vars.fd")
        (home / "peer").mkdir()
        env = dict(os.environ, PYHV_HOME=str(home))
        plain, pyhv, rss, uss = [], [], [], []
        # `pyhv vm` goes through pyhvd.
        with child_pyhvd(home, env, home / "pyhvd.log"):
            for i in range(runs):
                plain.append(time_plain(argv))
                t, r, u = time_pyhv(env, paths, config)
                pyhv.append(t)
                rss.append(r)
                uss.append(u)
                print(
                    f"run {i + 1}: plain qemu {plain[-1]:.2f} s, pyhv {pyhv[-1]:.2f} s, "
                    f"worker RSS {r / 2**20:.1f} MiB, USS {u / 2**20:.1f} MiB"
                )
        p, q = statistics.median(plain), statistics.median(pyhv)
        print(f"median to ready line: plain qemu {p:.2f} s, pyhv vm start {q:.2f} s")
        print(f"ratio pyhv/plain: {q / p:.2f} (goal <= 1.1)")
        print(
            f"worker resident memory without QEMU: RSS {statistics.median(rss) / 2**20:.1f} MiB "
            f"(goal <= 40 MB), of which its own (USS) {statistics.median(uss) / 2**20:.1f} MiB"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
