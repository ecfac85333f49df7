"""The host's pool of 2 MiB huge pages, which VMs with ``memory_hugepages`` take their RAM from.

The pool is the administrator's (``sysctl vm.nr_hugepages``): pyhv never resizes it, it checks
before QEMU starts so that a short pool is one clear line instead of QEMU's mmap error.
"""

from __future__ import annotations

from pathlib import Path

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


def available_pages(pool: Path = POOL) -> int:
    """Pages neither in use nor promised: the kernel reserves a shared mapping's pages when it
    is made and counts them free until they are touched."""
    return pool_pages("free_hugepages", pool) - pool_pages("resv_hugepages", pool)


def check_pool(name: str, memory_mib: int, pool: Path = POOL) -> None:
    """Refuse to start VM ``name`` when the pool cannot hold its RAM right now."""
    needed, free = pages_for(memory_mib), available_pages(pool)
    if free < needed:
        raise StateError(
            f"VM {name!r} has its memory on 2 MiB huge pages and needs {needed} "
            f"({needed * HUGEPAGE_MIB} MiB); the host's pool has {free} free of "
            f"{pool_pages('nr_hugepages', pool)}: raise vm.nr_hugepages "
            "or turn memory_hugepages off"
        )
