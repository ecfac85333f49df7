"""Option negotiation (``Negotiation``) without sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nbd_client import pack_info_request, pack_meta_context_request, parse_option_reply

from pyhv.storage.nbd import protocol as p
from pyhv.storage.nbd.handshake import ExportInfo, Negotiation

DISK = ExportInfo("disk", 1 << 20, p.NBD_FLAG_HAS_FLAGS | p.NBD_FLAG_SEND_FLUSH, 1)
EXPORTS = {"disk": DISK, "other": ExportInfo("other", 4096, p.NBD_FLAG_HAS_FLAGS, 512)}


def nego(no_zeroes: bool = True) -> Negotiation:
    return Negotiation(EXPORTS.get, lambda: sorted(EXPORTS), no_zeroes)


def replies(raw: bytes) -> list[tuple[int, int, bytes]]:
    """Split concatenated option replies into (option, type, payload)."""
    out, pos = [], 0
    while pos < len(raw):
        opt, rtype, n = parse_option_reply(raw[pos : pos + 20])
        out.append((opt, rtype, raw[pos + 20 : pos + 20 + n]))
        pos += 20 + n
    return out


def test_go_known_export_sends_info_and_enters_transmission() -> None:
    out = nego().handle(p.NBD_OPT_GO, pack_info_request("disk", [p.NBD_INFO_NAME]))
    assert out.export == DISK and not out.close
    got = replies(out.reply)
    assert [t for _, t, _ in got] == [p.NBD_REP_INFO] * 3 + [p.NBD_REP_ACK]
    assert struct.unpack(">HQH", got[0][2]) == (p.NBD_INFO_EXPORT, DISK.size, DISK.flags)
    assert struct.unpack(">HIII", got[1][2]) == (p.NBD_INFO_BLOCK_SIZE, 1, 4096, 32 << 20)
    assert got[2][2] == struct.pack(">H", p.NBD_INFO_NAME) + b"disk"


def test_info_does_not_enter_transmission() -> None:
    out = nego().handle(p.NBD_OPT_INFO, pack_info_request("other"))
    assert out.export is None and not out.close
    assert struct.unpack(">HIII", replies(out.reply)[1][2])[1] == 512


def test_go_unknown_export() -> None:
    out = nego().handle(p.NBD_OPT_GO, pack_info_request("nope"))
    assert out.export is None
    assert replies(out.reply)[0][1] == p.NBD_REP_ERR_UNKNOWN


def test_go_malformed_payload_is_invalid_not_fatal() -> None:
    out = nego().handle(p.NBD_OPT_GO, b"\0\0\0\x09dis")
    assert not out.close and replies(out.reply)[0][1] == p.NBD_REP_ERR_INVALID


def test_list() -> None:
    got = replies(nego().handle(p.NBD_OPT_LIST, b"").reply)
    assert [(t, d[4:]) for _, t, d in got[:-1]] == [
        (p.NBD_REP_SERVER, b"disk"),
        (p.NBD_REP_SERVER, b"other"),
    ]
    assert got[-1][1] == p.NBD_REP_ACK
    assert replies(nego().handle(p.NBD_OPT_LIST, b"x").reply)[0][1] == p.NBD_REP_ERR_INVALID


def test_abort_acks_and_closes() -> None:
    out = nego().handle(p.NBD_OPT_ABORT, b"")
    assert out.close and replies(out.reply)[0][1] == p.NBD_REP_ACK


@pytest.mark.parametrize("option", [5, 11, 12345])  # STARTTLS, EXTENDED_HEADERS, made up
def test_unknown_options_are_unsupported(option: int) -> None:
    out = nego().handle(option, b"whatever")
    assert not out.close and replies(out.reply)[0][1] == p.NBD_REP_ERR_UNSUP


@pytest.mark.parametrize(("no_zeroes", "length"), [(True, 10), (False, 134)])
def test_export_name(no_zeroes: bool, length: int) -> None:
    out = nego(no_zeroes).handle(p.NBD_OPT_EXPORT_NAME, b"disk")
    assert out.export == DISK and len(out.reply) == length
    assert struct.unpack(">QH", out.reply[:10]) == (DISK.size, DISK.flags)


def test_export_name_unknown_closes_without_reply() -> None:
    out = nego().handle(p.NBD_OPT_EXPORT_NAME, b"nope")
    assert out.close and out.reply == b""


def test_meta_context_needs_structured_replies() -> None:
    n = nego()
    req = pack_meta_context_request("disk", [p.BASE_ALLOCATION])
    assert replies(n.handle(p.NBD_OPT_SET_META_CONTEXT, req).reply)[0][1] == p.NBD_REP_ERR_INVALID
    assert replies(n.handle(p.NBD_OPT_STRUCTURED_REPLY, b"").reply)[0][1] == p.NBD_REP_ACK
    got = replies(n.handle(p.NBD_OPT_SET_META_CONTEXT, req).reply)
    assert got[0][1] == p.NBD_REP_META_CONTEXT
    assert got[0][2] == struct.pack(">I", p.BASE_ALLOCATION_ID) + b"base:allocation"
    assert n.block_status_for(DISK)
    assert not n.block_status_for(EXPORTS["other"])  # selected for "disk" only


def test_set_meta_context_without_known_query_selects_nothing() -> None:
    n = nego()
    n.handle(p.NBD_OPT_STRUCTURED_REPLY, b"")
    got = replies(
        n.handle(p.NBD_OPT_SET_META_CONTEXT, pack_meta_context_request("disk", ["x:y"])).reply
    )
    assert [t for _, t, _ in got] == [p.NBD_REP_ACK]
    assert not n.block_status_for(DISK)


@pytest.mark.parametrize("queries", [[], ["base:"]])
def test_list_meta_context_lists_base_allocation(queries: list[str]) -> None:
    n = nego()
    n.handle(p.NBD_OPT_STRUCTURED_REPLY, b"")
    got = replies(
        n.handle(p.NBD_OPT_LIST_META_CONTEXT, pack_meta_context_request("disk", queries)).reply
    )
    assert [t for _, t, _ in got] == [p.NBD_REP_META_CONTEXT, p.NBD_REP_ACK]
    assert not n.block_status_for(DISK)  # listing selects nothing


def test_meta_context_unknown_export() -> None:
    n = nego()
    n.handle(p.NBD_OPT_STRUCTURED_REPLY, b"")
    req = pack_meta_context_request("nope", [p.BASE_ALLOCATION])
    assert replies(n.handle(p.NBD_OPT_SET_META_CONTEXT, req).reply)[0][1] == p.NBD_REP_ERR_UNKNOWN


def test_structured_reply_with_data_is_invalid() -> None:
    n = nego()
    assert replies(n.handle(p.NBD_OPT_STRUCTURED_REPLY, b"x").reply)[0][1] == p.NBD_REP_ERR_INVALID
    assert not n.structured


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=40)), max_size=8))
def test_any_option_sequence_gets_an_answer(options: list[tuple[int, bytes]]) -> None:
    n = nego()
    for option, data in options:
        out = n.handle(option, data)
        if option != p.NBD_OPT_EXPORT_NAME:  # the one option answered by closing
            assert replies(out.reply)
        if out.close or out.export is not None:
            break
