"""Checkpoint of a running guest: ``pyhv checkpoint new`` / ``apply`` against QEMU's own
``savevm`` / ``loadvm`` (HMP through ``human-monitor-command``), same run.

Both run the guest kit (1 vCPU, 512 MiB memfd memory, q35, TCG, root disk on virtio-scsi)
and first fill ``--fill-mib`` of guest memory with data (a tmpfs file), so there is memory to
save. The peer is the worker's own QEMU command line with the root disk converted to qcow2
and opened by QEMU's qcow2 driver (savevm needs a qcow2 node), serial on stdio. savevm stops
the guest for the whole save, so its pause is its duration; pyhv's pause is the stop around
the disk swap and the start of the background memory save (the node's ``paused_ms``). Apply
switches the disks in the running worker and loads the memory into a new QEMU, as loadvm
keeps the guest stopped throughout: both pauses are their durations. Before the first pyhv
checkpoint of a QEMU process the worker has QEMU map the guest's memory (outside the pause);
the second shows the steady state. QEMU's first savevm is slower than its next ones too, so the
peer also saves twice: first is compared with first, second with second, and the ratios
against the goals use the second of each; loadvm loads the second. Goals:
pause ≤ 0.05 × savevm's, total ≤ 1.0 × (create against savevm, apply against loadvm).
Asserts nothing.

Both sides run twice: guest RAM on 4 KiB pages, then on 2 MiB huge pages (``memory_hugepages``;
the bench grows the host's pool for the run and puts it back). QEMU 7.2's background snapshot
write-protects, copies and releases guest memory one host page at a time (three system calls
per page), so the page size decides how its total compares with savevm's.

    .venv/bin/python bench/checkpoint.py [--fill-mib 128] [--pages 4k|2m|both]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vm_start import make_vm, plain_argv

from pyhv.checkpoints import CheckpointManager
from pyhv.guestkit import READY_LINE, build_kit
from pyhv.host.hugepages import POOL, available_pages, pages_for, pool_pages
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, make_vm_config
from pyhv.paths import HomePaths, RuntimeLayout
from pyhv.worker.agent import GuestAgent
from pyhv.worker.local import LocalHost
from pyhv.worker.qmp import QmpSession

TIMEOUT_S = 180.0


def fill_script(mib: int) -> list[str]:
    return ["sh", "-c", f"yes 0123456789abcdef | head -c {mib}M > /tmp/fill && echo ok"]


def run_pyhv(home: Path, fill_mib: int, hugepages: bool) -> dict[str, float]:
    kit = build_kit()
    paths = HomePaths(home, run_root=home / "run")
    disk = home / "root.vhdx"
    shutil.copyfile(kit.rootdisk, disk)
    config = make_vm(paths, kit, disk, hugepages)
    host, manager = LocalHost(paths), CheckpointManager(paths)
    host.start(config.name, wait_ready_s=TIMEOUT_S)
    host.exec(config.name, fill_script(fill_mib), timeout_s=TIMEOUT_S)
    out: dict[str, float] = {}
    for name in ("first", "second"):
        started = time.monotonic()
        node = manager.create(config.name, name)
        out[f"{name}_total"] = time.monotonic() - started
        out[f"{name}_pause"] = (node.paused_ms or 0.0) / 1000
    started = time.monotonic()
    manager.apply(config.name, "second")
    out["apply_total"] = time.monotonic() - started
    host.exec(config.name, ["true"])  # the restored guest answers
    host.turn_off(config.name)
    return out


async def run_peer(home: Path, fill_mib: int, hugepages: bool) -> dict[str, float]:
    kit = build_kit()
    qcow2 = home / "peer.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(kit.rootdisk_raw), str(qcow2)], check=True
    )
    peer = make_vm_config(
        name="peer",
        processor_count=1,
        memory_startup_mib=512,
        memory_hugepages=hugepages,
        kernel=KernelBoot(kernel=kit.kernel, initrd=kit.initrd, cmdline=kit.cmdline),
        scsi_controllers=[ScsiController(disks=[DiskAttachment(slot=0, path=qcow2)])],
    )
    run = home / "peer"
    run.mkdir()
    argv = plain_argv(peer, run, home / "peer-vars.fd", driver="qcow2")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readuntil(READY_LINE.encode()), TIMEOUT_S)
        drain = asyncio.create_task(proc.stdout.read())
        layout = RuntimeLayout(run)
        agent = GuestAgent(str(layout.qga), "peer", timeout=TIMEOUT_S)
        await agent.exec(fill_script(fill_mib), timeout=TIMEOUT_S)
        await agent.close()
        qmp = await QmpSession.connect(str(layout.qmp), "peer", 30.0)
        out: dict[str, float] = {}
        # Like pyhv's: a first and a second savevm of this QEMU, then loadvm of the second.
        for key, command in (
            ("first_savevm", "savevm s1"),
            ("savevm", "savevm s2"),
            ("loadvm", "loadvm s2"),
        ):
            started = time.monotonic()
            reply = await qmp.execute("human-monitor-command", {"command-line": command})
            out[key] = time.monotonic() - started
            if reply:
                raise SystemExit(f"{command} failed: {reply.strip()}")
        await qmp.execute("quit")
        await qmp.close()
        drain.cancel()
        return out
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@contextmanager
def hugepage_pool(pages: int) -> Iterator[None]:
    """At least ``pages`` free 2 MiB pages for the duration (the bench runs as root, like
    pyhvd); the pool's size is put back afterwards."""
    nr = POOL / "nr_hugepages"
    before = pool_pages("nr_hugepages")
    shortfall = pages - available_pages()
    if shortfall > 0:
        nr.write_text(f"{before + shortfall}\n")
    if available_pages() < pages:
        nr.write_text(f"{before}\n")
        raise SystemExit(f"the kernel gave fewer than {pages} free huge pages")
    try:
        yield
    finally:
        nr.write_text(f"{before}\n")


def measure(fill_mib: int, hugepages: bool) -> None:
    home = Path(tempfile.mkdtemp(prefix="pyhvc", dir="/tmp"))
    try:
        peer = asyncio.run(run_peer(home, fill_mib, hugepages))
        ours = run_pyhv(home, fill_mib, hugepages)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    pages = "2 MiB huge pages" if hugepages else "4 KiB pages"
    print(f"== guest memory 512 MiB on {pages} (both), {fill_mib} MiB of it filled with data")
    print(
        f"QEMU savevm (first of this QEMU) {peer['first_savevm']:.2f} s, (second) "
        f"{peer['savevm']:.2f} s (guest paused throughout), loadvm {peer['loadvm']:.2f} s"
    )
    for name in ("first", "second"):
        print(
            f"pyhv checkpoint ({name} of this QEMU): total {ours[f'{name}_total']:.2f} s, "
            f"guest paused {ours[f'{name}_pause'] * 1000:.0f} ms"
        )
    print(f"pyhv apply (new disks, memory into a new QEMU): {ours['apply_total']:.2f} s")
    print(
        f"ratio pause pyhv/savevm: {ours['second_pause'] / peer['savevm']:.3f} (goal <= 0.05); "
        f"first checkpoint {ours['first_pause'] / peer['first_savevm']:.3f}"
    )
    print(
        f"ratio total pyhv/savevm: {ours['second_total'] / peer['savevm']:.2f} (goal <= 1.0); "
        f"first checkpoint {ours['first_total'] / peer['first_savevm']:.2f}"
    )
    print(f"ratio apply pyhv/loadvm: {ours['apply_total'] / peer['loadvm']:.2f} (goal <= 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fill-mib", type=int, default=128)
    parser.add_argument("--pages", choices=["4k", "2m", "both"], default="both")
    args = parser.parse_args()
    if args.pages in ("4k", "both"):
        measure(args.fill_mib, hugepages=False)
    if args.pages in ("2m", "both"):
        with hugepage_pool(2 * pages_for(512)):
            measure(args.fill_mib, hugepages=True)


if __name__ == "__main__":
    main()
