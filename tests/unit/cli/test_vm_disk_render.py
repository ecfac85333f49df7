"""How disks, their QoS and the provider's counters read in `vm show` and `vm disk list`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.cli.vm_disk import _bandwidth, _iops, io_cell, row_cells, row_json
from pyhv.cli.vm_render import disk_io, disk_qos
from pyhv.errors import UsageError
from pyhv.model import DiskAttachment, DiskStats
from pyhv.model.limits import MAX_QOS_LIMIT
from pyhv.service.schemas import DiskRow
from pyhv.units import MiB

STATS = DiskStats(
    read_ops=3,
    write_ops=2,
    read_bytes=3 * MiB,
    write_bytes=8192,
    flush_ops=1,
    read_latency_ms_avg=0.25,
    write_latency_ms_avg=None,
)


def test_qos_text() -> None:
    assert disk_qos(None, None) == ""
    assert disk_qos(500, 10 * MiB) == "500 IOPS, 10M/s"


def test_show_line_has_counters_and_latency() -> None:
    assert disk_io(STATS) == (
        "3 reads (3072 KiB), 2 writes (8 KiB), 1 flushes; mean latency read 0.25 ms"
    )
    assert io_cell(STATS) == "3 r 3M (0.2 ms), 2 w 8K"


def test_list_row_of_an_unreadable_disk() -> None:
    disk = DiskAttachment(slot=7, path=Path("/d.vhdx"), max_iops=9)
    row = DiskRow(controller=1, slot=7, disk=disk, error="gone")
    assert row_cells(row) == ["1:7", "/d.vhdx", "? (gone)", "?", "read-write", "9 IOPS", ""]
    assert row_json(row)["error"] == "gone" and row_json(row)["max_iops"] == 9


def test_qos_options_beyond_qemu_s_limit_are_one_line() -> None:
    """The request's model refused them in the CLI with a traceback."""
    with pytest.raises(UsageError, match=r"^--max-iops 1000000000000001: at most 10{15}$"):
        _iops(MAX_QOS_LIMIT + 1)
    with pytest.raises(UsageError, match=r"^--max-bandwidth 1000P: at most 10{15} bytes a second$"):
        _bandwidth("1000P")
    assert (_iops(0), _bandwidth("50M")) == (0, 50 * MiB)
