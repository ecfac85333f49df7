"""A guest whose RAM is on 2 MiB huge pages: it boots from the host's pool, checkpoints and
applies with its memory (the new QEMU maps the same hugetlb memfd), gives the pages back when it
stops, and a pool too small for it is refused before QEMU starts. A guest that does not require
them gets them as surplus pages where the overcommit limit allows, and 4 KiB pages where
nothing does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyhv.checkpoints import CheckpointManager
from pyhv.errors import PyhvError
from pyhv.host.hugepages import POOL, available_pages, pool_pages, read_pool
from pyhv.model import VmState
from pyhv.worker.local import LocalHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOOT_TIMEOUT_S = 180.0
GUEST_PAGES = 256  # 512 MiB
MakeVm = Callable[..., str]
Shell = Callable[[str, str], str]


@pytest.fixture(scope="module")
def overcommit() -> Iterator[Path]:
    """The overcommit limit, set to what a test asks and put back after the module; 0 unless
    a test sets it, so the pool alone is what the kernel hands out."""
    limit = POOL / "nr_overcommit_hugepages"
    before = pool_pages("nr_overcommit_hugepages")
    try:
        limit.write_text("0\n")
    except OSError as e:
        pytest.skip(f"cannot set the huge page overcommit limit: {e}")
    yield limit
    limit.write_text(f"{before}\n")


@pytest.fixture(scope="module")
def reserved(overcommit: Path) -> Iterator[int]:
    """Grow the pool by two guests' worth for the module (a fresh or a mapped memfd), and
    give it back; the free pages before the guest starts."""
    nr = POOL / "nr_hugepages"
    before = pool_pages("nr_hugepages")
    try:
        nr.write_text(f"{before + 2 * GUEST_PAGES}\n")
    except OSError as e:
        pytest.skip(f"cannot grow the huge page pool: {e}")
    free = available_pages()
    if free < 2 * GUEST_PAGES:
        nr.write_text(f"{before}\n")
        pytest.skip(f"the kernel gave only {free} free huge pages")
    yield free
    nr.write_text(f"{before}\n")


def test_a_hugepage_guest_checkpoints_and_applies_with_its_memory(
    host: LocalHost, make_vm: MakeVm, shell: Shell, reserved: int
) -> None:
    name = make_vm("hpvm", memory_hugepages=True)
    host.start(name, wait_ready_s=BOOT_TIMEOUT_S)
    assert available_pages() <= reserved - GUEST_PAGES  # its RAM is in the pool
    manager = CheckpointManager(host.paths, host.inventory)
    pid = shell(name, "sleep 10000 </dev/null >/dev/null 2>&1 & echo $!").strip()
    shell(name, "echo A > /file-A && sync")
    manager.create(name, "c1")
    shell(name, "echo B > /file-B && sync")
    manager.apply(name, "c1")
    assert host.status(host.get(name)).state == VmState.RUNNING
    assert shell(name, "ls / | grep '^file-' || true").split() == ["file-A"]
    assert shell(name, f"kill -0 {pid} && echo alive").strip() == "alive"
    assert available_pages() <= reserved - GUEST_PAGES  # still one guest's worth
    manager.create(name, "c2")  # a checkpoint of the QEMU that apply started
    host.turn_off(name)
    assert available_pages() == reserved


def test_a_pool_too_small_is_refused_before_qemu_starts(
    host: LocalHost, make_vm: MakeVm, reserved: int, tmp_path: Path
) -> None:
    too_big = (available_pages() + 1) * 2
    name = make_vm("hpbig", memory_hugepages=True, memory_startup_mib=too_big)
    with pytest.raises(PyhvError, match=r"huge pages and needs .* raise vm.nr_hugepages"):
        host.start(name, wait_ready_s=BOOT_TIMEOUT_S)
    assert host.status(host.get(name)).state == VmState.OFF


def guest_ram_huge_pages(host: LocalHost, name: str) -> int:
    """Huge pages of the VM's QEMU, in kB (its RAM is the only hugetlb mapping it has)."""
    pid = host.status(host.get(name)).qemu_pid
    status = Path(f"/proc/{pid}/status").read_text()
    return int(
        next(line for line in status.splitlines() if line.startswith("HugetlbPages:")).split()[1]
    )


def test_a_guest_gets_surplus_huge_pages_while_the_limit_allows_and_gives_them_back(
    host: LocalHost, make_vm: MakeVm, shell: Shell, reserved: int, overcommit: Path
) -> None:
    nr = POOL / "nr_hugepages"
    total = read_pool().total
    nr.write_text(f"{total - read_pool().available}\n")  # no pool page to give: surplus only
    try:
        overcommit.write_text(f"{read_pool().surplus + GUEST_PAGES}\n")
        name = make_vm("hpauto")
        host.start(name, wait_ready_s=BOOT_TIMEOUT_S)
        assert host.status(host.get(name)).large_pages is True
        assert read_pool().surplus == GUEST_PAGES
        shell(name, f"head -c {64 << 20} /dev/zero > /tmp/fill")  # the guest touches its RAM
        assert guest_ram_huge_pages(host, name) >= 64 * 1024
        host.turn_off(name)
        assert read_pool().surplus == 0

        overcommit.write_text("0\n")  # nothing to give now: 4 KiB pages
        host.start(name, wait_ready_s=BOOT_TIMEOUT_S)
        assert host.status(host.get(name)).large_pages is False
        assert guest_ram_huge_pages(host, name) == 0
        assert shell(name, "echo up").strip() == "up"
        host.turn_off(name)
    finally:
        overcommit.write_text("0\n")
        nr.write_text(f"{total}\n")
