"""Packing and parsing of NBD messages: round trips, spec rules, hostile input."""

from __future__ import annotations

import contextlib
import errno
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nbd_client import (
    pack_info_request,
    pack_meta_context_request,
    pack_option,
    pack_request,
    parse_block_status_payload,
    parse_chunk_header,
    parse_simple_reply,
)

from pyhv.errors import OutOfBounds, StorageError
from pyhv.storage.image import Extent, ExtentState
from pyhv.storage.nbd import protocol as p

u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
names = st.text(max_size=64).filter(lambda s: "\0" not in s)


@given(u16, u16, u64, u64, u32)
def test_request_round_trip(flags: int, cmd: int, handle: int, offset: int, length: int) -> None:
    raw = pack_request(flags, cmd, handle, offset, length)
    assert len(raw) == 28
    assert p.parse_request(raw) == p.Request(flags, cmd, handle, offset, length)


@given(st.binary(min_size=28, max_size=28))
def test_request_with_wrong_magic_is_a_protocol_error(raw: bytes) -> None:
    if raw[:4] == struct.pack(">I", p.NBD_REQUEST_MAGIC):
        return
    with pytest.raises(p.NbdProtocolError, match="bad request magic"):
        p.parse_request(raw)


@given(u32, u64)
def test_simple_reply_round_trip(error: int, handle: int) -> None:
    assert parse_simple_reply(p.pack_simple_reply(error, handle)) == (error, handle)


@given(u64, u64, st.integers(0, p.MAX_PAYLOAD))
def test_read_chunk_header(handle: int, offset: int, length: int) -> None:
    raw = p.pack_read_chunk_header(handle, offset, length)
    flags, rtype, h, n = parse_chunk_header(raw[:20])
    assert (flags, rtype, h, n) == (
        p.NBD_REPLY_FLAG_DONE,
        p.NBD_REPLY_TYPE_OFFSET_DATA,
        handle,
        8 + length,
    )
    assert struct.unpack(">Q", raw[20:]) == (offset,)


@given(u64, u32, st.text(max_size=100))
def test_error_chunk(handle: int, error: int, message: str) -> None:
    raw = p.pack_error_chunk(handle, error, message)
    flags, rtype, h, n = parse_chunk_header(raw[:20])
    assert (flags, rtype, h, n) == (
        p.NBD_REPLY_FLAG_DONE,
        p.NBD_REPLY_TYPE_ERROR,
        handle,
        len(raw) - 20,
    )
    err, mlen = struct.unpack(">IH", raw[20:26])
    assert err == error and raw[26:].decode() == message and mlen == len(raw) - 26


@given(
    u64, u32, st.lists(st.tuples(st.integers(1, 2**32 - 1), st.sampled_from([0, 3])), min_size=1)
)
def test_block_status_chunk_round_trip(handle: int, ctx: int, descs: list[tuple[int, int]]) -> None:
    raw = p.pack_block_status_chunk(handle, ctx, descs)
    _flags, rtype, h, n = parse_chunk_header(raw[:20])
    assert rtype == p.NBD_REPLY_TYPE_BLOCK_STATUS and h == handle and n == len(raw) - 20
    assert parse_block_status_payload(raw[20:]) == (ctx, descs)


@given(names, st.lists(u16, max_size=8))
def test_info_request_round_trip(name: str, types: list[int]) -> None:
    assert p.parse_info_request(pack_info_request(name, types)) == p.InfoRequest(name, tuple(types))


@given(names, st.lists(names, max_size=5))
def test_meta_context_request_round_trip(name: str, queries: list[str]) -> None:
    req = p.parse_meta_context_request(pack_meta_context_request(name, queries))
    assert req == p.MetaContextRequest(name, tuple(queries))


@given(st.binary(max_size=64))
def test_option_payload_parsers_never_crash(data: bytes) -> None:
    # Arbitrary bytes either parse or raise the one protocol error, nothing else.
    for parse in (p.parse_info_request, p.parse_meta_context_request):
        with contextlib.suppress(p.NbdProtocolError):
            parse(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\0\0\0\x05ab", "truncated"),
        (pack_info_request("disk") + b"x", "trailing"),
        (b"\0\0\0\x02\xff\xfe\0\0", "UTF-8"),
        (struct.pack(">I", 5000) + b"a" * 5000 + b"\0\0", "longer than 4096"),
    ],
)
def test_malformed_info_request(data: bytes, match: str) -> None:
    with pytest.raises(p.NbdProtocolError, match=match):
        p.parse_info_request(data)


def test_meta_context_count_larger_than_payload() -> None:
    data = struct.pack(">I", 4) + b"disk" + struct.pack(">I", 1000)
    with pytest.raises(p.NbdProtocolError, match="truncated"):
        p.parse_meta_context_request(data)


def test_greeting_and_client_flags() -> None:
    magic, opt, flags = struct.unpack(">QQH", p.pack_greeting())
    assert magic == p.NBDMAGIC and opt == p.IHAVEOPT
    assert flags == p.NBD_FLAG_FIXED_NEWSTYLE | p.NBD_FLAG_NO_ZEROES
    assert p.parse_client_flags(struct.pack(">I", 3)) == 3
    with pytest.raises(p.NbdProtocolError, match="unknown client flags"):
        p.parse_client_flags(struct.pack(">I", 4))


def test_option_header_limits() -> None:
    assert p.parse_option_header(pack_option(7, b"abc")[:16]) == (7, 3)
    with pytest.raises(p.NbdProtocolError, match="bad option magic"):
        p.parse_option_header(struct.pack(">QII", 1, 7, 0))
    with pytest.raises(p.NbdProtocolError, match="bytes long"):
        p.parse_option_header(struct.pack(">QII", p.IHAVEOPT, 7, p.MAX_OPTION_LENGTH + 1))


def test_export_name_reply_zeroes() -> None:
    assert len(p.pack_export_name_reply(1, 1, no_zeroes=True)) == 10
    assert p.pack_export_name_reply(1, 1, no_zeroes=False)[10:] == bytes(124)


def _req(cmd: int, offset: int = 0, length: int = 512, flags: int = 0) -> p.Request:
    return p.Request(flags, cmd, 1, offset, length)


@pytest.mark.parametrize(
    ("req", "read_only", "block_status", "expected"),
    [
        (_req(p.NBD_CMD_READ), False, False, 0),
        (_req(p.NBD_CMD_READ, offset=4096 - 511), False, False, p.NBD_EINVAL),
        (_req(p.NBD_CMD_WRITE, offset=4096), False, False, p.NBD_ENOSPC),
        (_req(p.NBD_CMD_WRITE_ZEROES, offset=4000), False, False, p.NBD_ENOSPC),
        (_req(p.NBD_CMD_TRIM, offset=4000), False, False, p.NBD_EINVAL),
        (_req(p.NBD_CMD_WRITE), True, False, p.NBD_EPERM),
        (_req(p.NBD_CMD_TRIM), True, False, p.NBD_EPERM),
        (_req(p.NBD_CMD_WRITE_ZEROES), True, False, p.NBD_EPERM),
        (_req(p.NBD_CMD_FLUSH, length=0), True, False, 0),
        (_req(p.NBD_CMD_BLOCK_STATUS), False, False, p.NBD_EINVAL),
        (_req(p.NBD_CMD_BLOCK_STATUS), False, True, 0),
        (_req(p.NBD_CMD_BLOCK_STATUS, length=0), False, True, p.NBD_EINVAL),
        (_req(99), False, False, p.NBD_EINVAL),
        (_req(p.NBD_CMD_READ, flags=p.NBD_CMD_FLAG_FUA), False, False, p.NBD_EINVAL),
        (_req(p.NBD_CMD_WRITE, flags=p.NBD_CMD_FLAG_FUA), False, False, 0),
        (_req(p.NBD_CMD_WRITE_ZEROES, flags=p.NBD_CMD_FLAG_NO_HOLE), False, False, 0),
        (_req(p.NBD_CMD_READ, length=p.MAX_PAYLOAD + 1, offset=0), False, False, p.NBD_EINVAL),
    ],
)
def test_check_request(req: p.Request, read_only: bool, block_status: bool, expected: int) -> None:
    assert p.check_request(req, 4096, read_only, block_status) == expected


@pytest.mark.parametrize(
    ("exc", "cmd", "expected"),
    [
        (OutOfBounds("x"), p.NBD_CMD_WRITE, p.NBD_ENOSPC),
        (OutOfBounds("x"), p.NBD_CMD_READ, p.NBD_EINVAL),
        (OSError(errno.EDQUOT, "quota"), p.NBD_CMD_WRITE, p.NBD_ENOSPC),
        (OSError(errno.EROFS, "ro"), p.NBD_CMD_WRITE, p.NBD_EPERM),
        (OSError(errno.EIO, "io"), p.NBD_CMD_READ, p.NBD_EIO),
        (ValueError("bug"), p.NBD_CMD_READ, p.NBD_EIO),
    ],
)
def test_errno_for(exc: BaseException, cmd: int, expected: int) -> None:
    assert p.errno_for(exc, cmd) == expected


def test_errno_for_looks_through_storage_errors() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as err:
            raise StorageError("disk.raw: write failed") from err
    except StorageError as wrapped:
        assert p.errno_for(wrapped, p.NBD_CMD_WRITE) == p.NBD_ENOSPC


HOLE = p.NBD_STATE_HOLE | p.NBD_STATE_ZERO
extent_lists = st.lists(
    st.tuples(st.integers(1, 5000), st.sampled_from([ExtentState.DATA, ExtentState.ZERO])),
    min_size=1,
)


@given(extent_lists, st.data())
def test_block_status_descriptors_cover_the_request(
    runs: list[tuple[int, ExtentState]], data: st.DataObject
) -> None:
    extents, pos = [], 0
    for n, state in runs:
        extents.append(Extent(pos, n, state))
        pos += n
    offset = data.draw(st.integers(0, pos - 1))
    length = data.draw(st.integers(1, pos - offset))
    descs = p.block_status_descriptors(extents, offset, length, req_one=False)
    assert sum(n for n, _ in descs) == length
    assert all(n > 0 for n, _ in descs)
    assert all(a[1] != b[1] for a, b in itertools.pairwise(descs))  # merged
    # every byte's status matches the extent holding it
    at = offset
    for n, status in descs:
        for probe in (at, at + n - 1):
            ext = next(e for e in extents if e.offset <= probe < e.end)
            assert status == (HOLE if ext.state == ExtentState.ZERO else 0)
        at += n
    one = p.block_status_descriptors(extents, offset, length, req_one=True)
    assert one == descs[:1]


def test_block_status_descriptors_fill_gaps_as_data() -> None:
    extents = [Extent(100, 100, ExtentState.ZERO)]
    assert p.block_status_descriptors(extents, 0, 300, False) == [(100, 0), (100, HOLE), (100, 0)]
