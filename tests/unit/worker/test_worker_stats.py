from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import pytest

from pyhv.units import MiB
from pyhv.worker.qmp import Qmp
from pyhv.worker.stats import StatsSampler, cpu_percent, memory_used_mib, parse_stat_cpu_ticks

# proc(5) stat line; the command name holds a space and parentheses on purpose.
STAT = "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 0 0 0 0 {u} {s} 0 0 20 0 3 0 100 0 0"


def test_parse_stat_counts_from_the_last_parenthesis() -> None:
    assert parse_stat_cpu_ticks(STAT.format(u=150, s=50)) == 200


def test_memory_used_prefers_guest_stats() -> None:
    guest = {"stats": {"stat-total-memory": 512 * MiB, "stat-available-memory": 400 * MiB}}
    assert memory_used_mib(guest, 300 * MiB) == 112
    assert memory_used_mib({"stats": {"stat-total-memory": -1}}, 300 * MiB) == 300
    assert memory_used_mib(None, 300 * MiB) == 300


def test_cpu_percent() -> None:
    assert cpu_percent(1.0, 2.0, 10.0, 12.0) == pytest.approx(50.0)
    assert cpu_percent(1.0, 2.0, 10.0, 10.0) == 0.0


class StatsQmp:
    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        return {
            "query-cpus-fast": [
                {"cpu-index": 1, "thread-id": 12},
                {"cpu-index": 0, "thread-id": 11},
            ],
            "query-balloon": {"actual": 256 * MiB},
            "qom-get": {"stats": {}},
        }.get(cmd, {})


def test_sampler_reads_vcpu_threads_from_proc(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    for rel, ticks in (
        ("7/stat", 4 * tick),
        ("7/task/11/stat", tick),
        ("7/task/12/stat", 2 * tick),
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(STAT.format(u=ticks, s=0))
    (tmp_path / "7/statm").write_text("1000 2560 0 0 0 0 0\n")
    clock = iter([100.0, 102.0])
    sampler = StatsSampler(cast(Qmp, StatsQmp()), 7, 512, lambda: next(clock), proc=tmp_path)
    stats, percent = asyncio.run(sampler.sample())
    assert stats.cpu_time_per_vcpu_s == [1.0, 2.0]
    assert stats.cpu_time_s == 4.0
    assert percent == 200.0
    assert stats.memory_assigned_mib == 256
    assert stats.memory_used_mib == 2560 * os.sysconf("SC_PAGE_SIZE") // MiB
    assert stats.uptime_s == 2.0
