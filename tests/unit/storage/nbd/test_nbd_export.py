"""An export's advertised flags and block sizes, and its swap gate."""

from __future__ import annotations

import asyncio

from nbd_client import MemImage

from pyhv.storage.nbd import protocol as p
from pyhv.storage.nbd.export import Export, minimum_block, transmission_flags


class SparseImage(MemImage):
    @property
    def block_size(self) -> int:
        return 2 << 20


def test_flags() -> None:
    rw, ro = transmission_flags(False), transmission_flags(True)
    assert rw & p.NBD_FLAG_SEND_WRITE_ZEROES and not rw & p.NBD_FLAG_READ_ONLY
    assert ro & p.NBD_FLAG_READ_ONLY and not ro & (p.NBD_FLAG_SEND_TRIM | p.NBD_FLAG_SEND_FUA)
    both = p.NBD_FLAG_CAN_MULTI_CONN | p.NBD_FLAG_HAS_FLAGS | p.NBD_FLAG_SEND_FLUSH
    assert rw & both == both and ro & both == both


def test_minimum_block_is_byte_for_plain_files_sector_for_sparse_formats() -> None:
    assert minimum_block(MemImage(4096)) == 1
    assert minimum_block(SparseImage(4096)) == 512


def test_gate_holds_new_requests_until_reopened() -> None:
    async def main() -> None:
        export = Export("disk", MemImage(4096), read_only=False)
        assert export.try_begin()
        quiet = asyncio.create_task(export.quiesce())
        await asyncio.sleep(0)
        assert not quiet.done() and not export.try_begin()  # closed, one still inside
        export.end()
        await asyncio.wait_for(quiet, 10)
        waiter = asyncio.create_task(export.wait_open())
        await asyncio.sleep(0)
        assert not waiter.done()
        export.reopen()
        await asyncio.wait_for(waiter, 10)
        assert export.try_begin() and export.in_flight == 1

    asyncio.run(main())
