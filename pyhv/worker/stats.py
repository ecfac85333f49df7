"""Statistics of a running VM from QEMU's vCPU threads (/proc), the balloon and the clock.

The parsing is pure; :class:`StatsSampler` does the reading and keeps the previous sample so
``cpu_percent`` describes the recent past rather than the whole run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhv.model import VmStats
from pyhv.units import MiB
from pyhv.worker.qmp import Qmp, vcpu_thread_ids

BALLOON_PATH = "/machine/peripheral/balloon0"
MIN_WINDOW_S = 0.5


def parse_stat_cpu_ticks(stat_line: str) -> int:
    """utime + stime (fields 14 and 15 of proc(5) ``stat``), in clock ticks.

    The command name (field 2) may contain spaces and parentheses, so the fields are counted
    from the last ``)``.
    """
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def parse_stat_rss_pages(statm_text: str) -> int:
    return int(statm_text.split()[1])


def memory_used_mib(guest_stats: dict[str, Any] | None, rss_bytes: int) -> int:
    """What the guest uses when its balloon driver reports it, else what QEMU holds."""
    stats = (guest_stats or {}).get("stats", {})
    total = stats.get("stat-total-memory", -1)
    available = stats.get("stat-available-memory", -1)
    if total > 0 and available >= 0:
        return int((total - available) // MiB)
    return rss_bytes // MiB


def cpu_percent(prev_s: float, now_s: float, prev_t: float, now_t: float) -> float:
    """CPU use between two samples, 100 per fully busy host core (like top)."""
    window = now_t - prev_t
    return 0.0 if window <= 0 else max(0.0, 100.0 * (now_s - prev_s) / window)


@dataclass
class _Sample:
    at: float
    cpu_s: float
    percent: float


class StatsSampler:
    """Samples one QEMU process; ``clock`` is monotonic seconds, ``proc`` the /proc root."""

    def __init__(
        self,
        qmp: Qmp,
        qemu_pid: int,
        memory_mib: int,
        clock: Callable[[], float],
        *,
        proc: Path = Path("/proc"),
    ) -> None:
        self._qmp = qmp
        self._pid = qemu_pid
        self._memory_mib = memory_mib
        self._clock = clock
        self._proc = proc
        self._tick = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._started = clock()
        self._last = _Sample(self._started, 0.0, 0.0)

    async def enable_guest_stats(self) -> None:
        """Ask the balloon driver to report guest memory every 2 s (QEMU polls, not us)."""
        await self._qmp.execute(
            "qom-set",
            {"path": BALLOON_PATH, "property": "guest-stats-polling-interval", "value": 2},
        )

    def _ticks(self, rel: str) -> float:
        return parse_stat_cpu_ticks((self._proc / rel).read_text()) / self._tick

    async def sample(self) -> tuple[VmStats, float]:
        """A statistics sample and the CPU percentage since the previous one."""
        tids = await vcpu_thread_ids(self._qmp)
        per_vcpu = [self._ticks(f"{self._pid}/task/{tid}/stat") for tid in tids]
        total = self._ticks(f"{self._pid}/stat")
        now = self._clock()
        if now - self._last.at >= MIN_WINDOW_S:
            pct = cpu_percent(self._last.cpu_s, total, self._last.at, now)
            self._last = _Sample(now, total, pct)
        balloon = await self._qmp.execute("query-balloon")
        guest = await self._qmp.execute(
            "qom-get", {"path": BALLOON_PATH, "property": "guest-stats"}
        )
        rss = parse_stat_rss_pages((self._proc / f"{self._pid}/statm").read_text()) * self._page
        stats = VmStats(
            cpu_time_s=round(total, 2),
            cpu_time_per_vcpu_s=[round(s, 2) for s in per_vcpu],
            memory_assigned_mib=int(balloon.get("actual", self._memory_mib * MiB)) // MiB,
            memory_used_mib=memory_used_mib(guest, rss),
            uptime_s=round(now - self._started, 1),
        )
        return stats, round(self._last.percent, 1)
