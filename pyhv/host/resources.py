"""How many processors and how much memory the host can give to VMs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pyhv.units import MiB


@dataclass(frozen=True)
class HostResources:
    cores: int
    memory_mib: int

    @classmethod
    def detect(cls) -> HostResources:
        """Logical processors this process may run on (cpusets included) and physical RAM."""
        cores = len(os.sched_getaffinity(0))
        # What psutil.virtual_memory().total says, without importing psutil into every worker.
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return cls(cores=cores, memory_mib=total // MiB)
