"""Checkpoint of a running guest: ``pyhv checkpoint new`` / ``apply`` against QEMU's own
``savevm`` / ``loadvm`` (HMP through ``human-monitor-command``), same run.

Both run the guest kit (1 vCPU, 512 MiB memfd memory, q35, TCG, root disk on virtio-scsi),
at the same time, their operations taken in turns, each after a ``sync``,
and first fill ``--fill-mib`` of guest memory with data (a tmpfs file), so there is memory to
save. The peer is the worker's own QEMU command line with the root disk converted to qcow2
and opened by QEMU's qcow2 driver (savevm needs a qcow2 node), serial on stdio. savevm stops
the guest for the whole save, so its pause is its duration; pyhv's pause is the stop around
the disk swap and the start of the background memory save (the node's ``paused_ms``). Apply
switches the disks in the running worker and loads the memory into a new QEMU, as loadvm keeps
the guest stopped throughout: both pauses are their durations. Before the first pyhv
checkpoint of a QEMU process the worker has QEMU map the guest's memory (outside the pause);
the next ones show the steady state. QEMU's first savevm is slower than its next ones too:
first is compared with first, and the ratios against the goals use the medians of
``--rounds`` more checkpoints against as many savevms, and of as many applies against
loadvms (one sample on a shared machine is one scheduler hiccup away from any number).
Goals: pause ≤ 0.05 × savevm's, total ≤ 1.0 × (create against savevm, apply against
loadvm). Asserts nothing.

Both sides run twice, neither VM asking for a page size: guest RAM on 2 MiB pages, as pyhv
backs it where the kernel can hand them out (the bench sets ``vm.nr_overcommit_hugepages``
for the run, as ``make`` does for good), then on 4 KiB pages (the limit 0; a host whose pool
has free huge pages cannot run this pass). Each side's page size is checked, not assumed.
QEMU 7.2's background snapshot write-protects, copies and releases guest memory one host page
at a time (three system calls per page), so the page size decides how its total compares
with savevm's.

    .venv/bin/python bench/checkpoint.py [--fill-mib 128] [--pages 4k|2m|both] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from vm_start import make_vm, plain_argv

from pyhv.checkpoints import CheckpointManager
from pyhv.guestkit import READY_LINE, build_kit
from pyhv.host.hugepages import POOL, pages_for, pool_pages, read_pool
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, make_vm_config
from pyhv.paths import HomePaths, RuntimeLayout
from pyhv.worker.agent import ExecResult, GuestAgent
from pyhv.worker.local import LocalHost
from pyhv.worker.qmp import QmpSession

TIMEOUT_S = 180.0


def fill_script(mib: int) -> list[str]:
    """Busybox's ``head`` takes a byte count, not ``128M``."""
    return ["sh", "-c", f"yes 0123456789abcdef | head -c {mib << 20} > /tmp/fill"]


def filled(result: ExecResult) -> None:
    if result.exit_code != 0:
        raise SystemExit(f"filling guest memory failed: {result.stderr.decode().strip()}")


class Ours:
    """The pyhv side: a worker-run VM, checkpointed and applied through the manager."""

    def __init__(self, home: Path, fill_mib: int, hugepages: bool) -> None:
        kit = build_kit()
        paths = HomePaths(home, run_root=home / "run")
        disk = home / "root.vhdx"
        shutil.copyfile(kit.rootdisk, disk)
        self.config = make_vm(paths, kit, disk)
        self.host, self.manager = LocalHost(paths), CheckpointManager(paths)
        self.host.start(self.config.name, wait_ready_s=TIMEOUT_S)
        if self.host.status(self.host.get(self.config.name)).large_pages != hugepages:
            raise SystemExit(f"pyhv's guest RAM is not on the pages asked for ({hugepages=})")
        filled(self.host.exec(self.config.name, fill_script(fill_mib), timeout_s=TIMEOUT_S))

    def create(self, name: str) -> tuple[float, float]:
        """Seconds in all, and of them the guest paused."""
        started = time.monotonic()
        node = self.manager.create(self.config.name, name)
        return time.monotonic() - started, (node.paused_ms or 0.0) / 1000

    def apply(self, name: str) -> float:
        started = time.monotonic()
        self.manager.apply(self.config.name, name)
        return time.monotonic() - started

    def close(self) -> None:
        self.host.exec(self.config.name, ["true"])  # the restored guest answers
        self.host.turn_off(self.config.name)


@asynccontextmanager
async def peer_vm(home: Path, fill_mib: int, hugepages: bool) -> AsyncIterator[QmpSession]:
    """The peer QEMU, guest booted and filled; yields its QMP session."""
    kit = build_kit()
    qcow2 = home / "peer.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(kit.rootdisk_raw), str(qcow2)], check=True
    )
    peer = make_vm_config(
        name="peer",
        processor_count=1,
        memory_startup_mib=512,
        kernel=KernelBoot(kernel=kit.kernel, initrd=kit.initrd, cmdline=kit.cmdline),
        scsi_controllers=[ScsiController(disks=[DiskAttachment(slot=0, path=qcow2)])],
    )
    run = home / "peer"
    run.mkdir()
    argv = plain_argv(peer, run, home / "peer-vars.fd", driver="qcow2")
    if any("hugetlb=on" in arg for arg in argv) != hugepages:
        raise SystemExit(f"the peer's guest RAM is not on the pages asked for ({hugepages=})")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readuntil(READY_LINE.encode()), TIMEOUT_S)
        drain = asyncio.create_task(proc.stdout.read())
        layout = RuntimeLayout(run)
        agent = GuestAgent(str(layout.qga), "peer", timeout=TIMEOUT_S)
        filled(await agent.exec(fill_script(fill_mib), timeout=TIMEOUT_S))
        await agent.close()
        qmp = await QmpSession.connect(str(layout.qmp), "peer", 30.0)
        yield qmp
        await qmp.execute("quit")
        await qmp.close()
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def hmp(qmp: QmpSession, command: str) -> float:
    started = time.monotonic()
    reply = await qmp.execute("human-monitor-command", {"command-line": command})
    if reply:
        raise SystemExit(f"{command} failed: {reply.strip()}")
    return time.monotonic() - started


async def interleaved(home: Path, fill_mib: int, hugepages: bool, rounds: int) -> dict[str, float]:
    """Both VMs up at once, their operations taken in turns (who goes first alternating), each
    after ``sync``: the shared machine's moods and the other side's write-back hit both."""
    ours = await asyncio.to_thread(Ours, home, fill_mib, hugepages)
    times: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        times.setdefault(key, []).append(value)

    async def create(n: int) -> None:
        await asyncio.to_thread(os.sync)
        total, pause = await asyncio.to_thread(ours.create, f"c{n}")
        note("first_total" if n == 0 else "total", total)
        note("first_pause" if n == 0 else "pause", pause)

    async def savevm(n: int) -> None:
        await asyncio.to_thread(os.sync)
        note("first_savevm" if n == 0 else "savevm", await hmp(qmp, f"savevm s{n}"))

    async def apply(n: int) -> None:
        await asyncio.to_thread(os.sync)
        note("apply_total", await asyncio.to_thread(ours.apply, f"c{rounds}"))

    async def loadvm(n: int) -> None:
        await asyncio.to_thread(os.sync)
        note("loadvm", await hmp(qmp, f"loadvm s{rounds}"))

    try:
        async with peer_vm(home, fill_mib, hugepages) as qmp:
            for pair, count in (((create, savevm), rounds + 1), ((apply, loadvm), rounds)):
                for n in range(count):
                    first, second = pair if n % 2 == 0 else pair[::-1]
                    await first(n)
                    await second(n)
    finally:
        await asyncio.to_thread(ours.close)
    for key, values in times.items():
        print(f"  {key}: " + " ".join(f"{v * 1000:.1f}" for v in values) + " ms")
    return {key: statistics.median(values) for key, values in times.items()}


@contextmanager
def huge_pages(on: bool) -> Iterator[None]:
    """Surplus 2 MiB pages for both guests (and a spare QEMU's fresh RAM), or none, for the
    duration; the overcommit limit is put back afterwards (the bench runs as root, like
    pyhvd)."""
    limit = POOL / "nr_overcommit_hugepages"
    before = pool_pages("nr_overcommit_hugepages")
    pool = read_pool()
    if not on and pool.available >= pages_for(512):
        raise SystemExit("the host's pool has free huge pages: no guest RAM on 4 KiB pages here")
    limit.write_text(f"{pool.surplus + 3 * pages_for(512) if on else 0}\n")
    try:
        yield
    finally:
        limit.write_text(f"{before}\n")


def measure(fill_mib: int, hugepages: bool, rounds: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="pyhvc", dir="/tmp"))
    try:
        m = asyncio.run(interleaved(home, fill_mib, hugepages, rounds))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    pages = "2 MiB huge pages" if hugepages else "4 KiB pages"
    print(f"== guest memory 512 MiB on {pages} (both), {fill_mib} MiB of it filled with data")
    print(
        f"QEMU savevm (first of this QEMU) {m['first_savevm']:.2f} s, (median of the next "
        f"{rounds}) {m['savevm']:.2f} s (guest paused throughout), loadvm {m['loadvm']:.2f} s"
    )
    print(
        f"pyhv checkpoint (first of this QEMU): total {m['first_total']:.2f} s, "
        f"guest paused {m['first_pause'] * 1000:.1f} ms"
    )
    print(
        f"pyhv checkpoint (median of the next {rounds}): total {m['total']:.2f} s, "
        f"guest paused {m['pause'] * 1000:.1f} ms"
    )
    print(f"pyhv apply (new disks, memory into a new QEMU): {m['apply_total']:.2f} s")
    print(
        f"ratio pause pyhv/savevm: {m['pause'] / m['savevm']:.3f} (goal <= 0.05); "
        f"first checkpoint {m['first_pause'] / m['first_savevm']:.3f}"
    )
    print(
        f"ratio total pyhv/savevm: {m['total'] / m['savevm']:.2f} (goal <= 1.0); "
        f"first checkpoint {m['first_total'] / m['first_savevm']:.2f}"
    )
    print(f"ratio apply pyhv/loadvm: {m['apply_total'] / m['loadvm']:.2f} (goal <= 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fill-mib", type=int, default=128)
    parser.add_argument("--pages", choices=["4k", "2m", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.pages in ("2m", "both"):
        with huge_pages(True):
            measure(args.fill_mib, True, args.rounds)
    if args.pages in ("4k", "both"):
        with huge_pages(False):
            measure(args.fill_mib, False, args.rounds)


if __name__ == "__main__":
    main()
