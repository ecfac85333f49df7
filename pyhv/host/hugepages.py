"""The host's 2 MiB huge pages, which guest RAM is backed with where the kernel can supply them.

Hyper-V backs guest RAM with large pages whenever the host has them, with no setting; pyhv
does the same: a VM's RAM is on 2 MiB pages when the kernel can hand them out at its start,
else on 4 KiB pages (``memory_hugepages`` makes them a requirement instead). The kernel
hands them out from the administrator's pool (``sysctl vm.nr_hugepages``) and, past it, as
surplus pages up to ``vm.nr_overcommit_hugepages``: allocated when QEMU maps the RAM and
returned when it exits, so a VM holds them only while it runs, a worker killed with its QEMU
leaks none, and pyhv never resizes anything. ``make`` sets the overcommit limit to the host's
memory in ``/etc/sysctl.d/60-pyhv.conf`` once (as libvirt's package sets ``fs.aio-max-nr``);
an administrator who wants 4 KiB pages sets it to 0 there.

Checkpoints are why it matters most here: QEMU's background snapshot write-protects, copies
and releases guest RAM one host page at a time, three system calls per page, so a guest on
2 MiB pages saves its memory several times faster (``bench/checkpoint.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pyhv.errors import StateError

HUGEPAGE_MIB = 2
POOL = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")


def pages_for(memory_mib: int) -> int:
    """Huge pages a guest of ``memory_mib`` maps (QEMU rounds its RAM up to whole pages)."""
    return -(-memory_mib // HUGEPAGE_MIB)


def pool_pages(field: str, pool: Path = POOL) -> int:
    """A counter of the pool (``nr_hugepages``, ``free_hugepages``, …); 0 where there is none."""
    try:
        return int((pool / field).read_text())
    except (OSError, ValueError):
        return 0


class PoolCounts(NamedTuple):
    """The pool's counters as one reading, so a report's numbers agree with each other."""

    total: int
    free: int
    reserved: int
    surplus: int = 0  # pages handed out past the pool (counted in ``total`` meanwhile)
    overcommit: int = 0  # the most surplus pages the kernel may hand out

    @property
    def available(self) -> int:
        """Pool pages neither in use nor promised: the kernel reserves a shared mapping's pages
        when it is made and counts them free until they are touched."""
        return self.free - self.reserved

    @property
    def headroom(self) -> int:
        """Pages the next mapping may get: the pool's available ones, then surplus ones up to
        the overcommit limit (if the kernel finds that much contiguous memory)."""
        return self.available + max(0, self.overcommit - self.surplus)


def read_pool(pool: Path = POOL) -> PoolCounts:
    """All zero where the kernel has no 2 MiB pool, as for an empty one: no VM fits either way."""
    return PoolCounts(
        pool_pages("nr_hugepages", pool),
        pool_pages("free_hugepages", pool),
        pool_pages("resv_hugepages", pool),
        pool_pages("surplus_hugepages", pool),
        pool_pages("nr_overcommit_hugepages", pool),
    )


def available_pages(pool: Path = POOL) -> int:
    """:attr:`PoolCounts.available` of the pool as it is now."""
    return read_pool(pool).available


def large_pages(name: str, memory_mib: int, required: bool, pool: Path = POOL) -> bool:
    """Whether VM ``name``'s RAM goes on 2 MiB pages at this start: always when ``required``,
    else when its size is whole pages and the kernel can hand out that many now.

    :raises StateError: ``required`` and the kernel cannot.
    """
    counts = read_pool(pool)
    if required:
        check_pool(name, memory_mib, counts)
        return True
    return memory_mib % HUGEPAGE_MIB == 0 and counts.headroom >= pages_for(memory_mib)


def check_pool(name: str, memory_mib: int, counts: PoolCounts) -> None:
    """Refuse to start VM ``name`` when the kernel cannot hold its RAM on huge pages right now,
    in one clear line instead of QEMU's mmap error."""
    needed = pages_for(memory_mib)
    if counts.headroom < needed:
        raise StateError(
            f"VM {name!r} has its memory on 2 MiB huge pages and needs {needed} "
            f"({needed * HUGEPAGE_MIB} MiB); the host has {counts.headroom} to give "
            f"({counts.available} free of {counts.total} in the pool, "
            f"{max(0, counts.overcommit - counts.surplus)} more by overcommit): "
            "raise vm.nr_hugepages or vm.nr_overcommit_hugepages, or turn memory_hugepages off"
        )


#: How QEMU 7.2 fails to start when the kernel has no huge pages left for the RAM's mmap.
QEMU_OUT_OF_PAGES = "unable to map backing store for guest RAM"


def out_of_huge_pages(start_error: str) -> bool:
    """Whether a QEMU that failed to start failed for want of pages for the guest's RAM."""
    return QEMU_OUT_OF_PAGES in start_error
