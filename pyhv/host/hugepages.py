"""The host's pool of 2 MiB huge pages, which VMs with ``memory_hugepages`` take their RAM from.

The pool is the administrator's (``sysctl vm.nr_hugepages``): pyhv never resizes it, it checks
before QEMU starts so that a short pool is one clear line instead of QEMU's mmap error.
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

    @property
    def available(self) -> int:
        """Pages neither in use nor promised: the kernel reserves a shared mapping's pages when
        it is made and counts them free until they are touched."""
        return self.free - self.reserved


def read_pool(pool: Path = POOL) -> PoolCounts:
    """All zero where the kernel has no 2 MiB pool, as for an empty one: no VM fits either way."""
    return PoolCounts(
        pool_pages("nr_hugepages", pool),
        pool_pages("free_hugepages", pool),
        pool_pages("resv_hugepages", pool),
    )


def available_pages(pool: Path = POOL) -> int:
    """:attr:`PoolCounts.available` of the pool as it is now."""
    return read_pool(pool).available


def check_pool(name: str, memory_mib: int, pool: Path = POOL) -> None:
    """Refuse to start VM ``name`` when the pool cannot hold its RAM right now."""
    needed, counts = pages_for(memory_mib), read_pool(pool)
    if counts.available < needed:
        raise StateError(
            f"VM {name!r} has its memory on 2 MiB huge pages and needs {needed} "
            f"({needed * HUGEPAGE_MIB} MiB); the host's pool has {counts.available} free of "
            f"{counts.total}: raise vm.nr_hugepages "
            "or turn memory_hugepages off"
        )
