"""NBD wire format: constants, and packing/parsing of handshake and transmission messages (pure).

# Ref: NBD protocol, ``doc/proto.md`` of github.com/NetworkBlockDevice/nbd
# ("Newstyle negotiation", "Option types", "Transmission phase", "Structured replies",
# "Metadata querying", "Error values"). All integers are big-endian ("network byte order").

Nothing here touches a socket: the handshake state machine (:mod:`.handshake`) and the server
(:mod:`.server`) feed bytes in and write what these functions return.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from pyhv.errors import NbdError, OutOfBounds
from pyhv.storage.image import Extent, ExtentState

# -- handshake ("Newstyle negotiation") -----------------------------------------------------------
NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT": newstyle, and the magic of every client option
REPLY_MAGIC = 0x0003E889045565A9  # option reply magic

NBD_FLAG_FIXED_NEWSTYLE = 1 << 0  # handshake flags (server) and client flags share these bits
NBD_FLAG_NO_ZEROES = 1 << 1
KNOWN_CLIENT_FLAGS = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES

# option types
NBD_OPT_EXPORT_NAME = 1
NBD_OPT_ABORT = 2
NBD_OPT_LIST = 3
NBD_OPT_INFO = 6
NBD_OPT_GO = 7
NBD_OPT_STRUCTURED_REPLY = 8
NBD_OPT_LIST_META_CONTEXT = 9
NBD_OPT_SET_META_CONTEXT = 10

# option reply types; errors have bit 31 set
NBD_REP_ACK = 1
NBD_REP_SERVER = 2
NBD_REP_INFO = 3
NBD_REP_META_CONTEXT = 4
NBD_REP_ERR_UNSUP = (1 << 31) + 1
NBD_REP_ERR_INVALID = (1 << 31) + 3
NBD_REP_ERR_UNKNOWN = (1 << 31) + 6

# NBD_REP_INFO payload types
NBD_INFO_EXPORT = 0
NBD_INFO_NAME = 1
NBD_INFO_BLOCK_SIZE = 3

# transmission flags (16 bits)
NBD_FLAG_HAS_FLAGS = 1 << 0
NBD_FLAG_READ_ONLY = 1 << 1
NBD_FLAG_SEND_FLUSH = 1 << 2
NBD_FLAG_SEND_FUA = 1 << 3
NBD_FLAG_SEND_TRIM = 1 << 5
NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
NBD_FLAG_CAN_MULTI_CONN = 1 << 8

# "Metadata querying": the one context we serve and its state bits
BASE_ALLOCATION = "base:allocation"
BASE_ALLOCATION_ID = 1  # our context id; any value the server chooses is valid
NBD_STATE_HOLE = 1 << 0
NBD_STATE_ZERO = 1 << 1

# -- transmission --------------------------------------------------------------------------------
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_STRUCTURED_REPLY_MAGIC = 0x668E33EF

NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
NBD_CMD_FLUSH = 3
NBD_CMD_TRIM = 4
NBD_CMD_WRITE_ZEROES = 6
NBD_CMD_BLOCK_STATUS = 7

NBD_CMD_FLAG_FUA = 1 << 0
NBD_CMD_FLAG_NO_HOLE = 1 << 1
NBD_CMD_FLAG_DF = 1 << 2
NBD_CMD_FLAG_REQ_ONE = 1 << 3

NBD_REPLY_FLAG_DONE = 1 << 0
NBD_REPLY_TYPE_OFFSET_DATA = 1
NBD_REPLY_TYPE_BLOCK_STATUS = 5
NBD_REPLY_TYPE_ERROR = (1 << 15) + 1

# "Error values": the only errno numbers allowed on the wire (they are Linux's values)
NBD_EPERM = 1
NBD_EIO = 5
NBD_ENOMEM = 12
NBD_EINVAL = 22
NBD_ENOSPC = 28

# limits we advertise with NBD_INFO_BLOCK_SIZE ("Block size constraints")
PREFERRED_BLOCK_SIZE = 4096
MAX_PAYLOAD = 32 * 1024 * 1024  # also QEMU's NBD_MAX_BUFFER_SIZE
MAX_OPTION_LENGTH = 64 * 1024  # an option longer than this is not a real client: drop it
MAX_STRING = 4096  # "Conventions": strings MUST be no longer than 4096 bytes

_GREETING = struct.Struct(">QQH")
_CLIENT_FLAGS = struct.Struct(">I")
OPTION_HEADER = struct.Struct(">QII")  # IHAVEOPT, option, length
_OPTION_REPLY = struct.Struct(">QIII")  # REPLY_MAGIC, option, reply type, length
_EXPORT_NAME_REPLY = struct.Struct(">QH")
_INFO_EXPORT = struct.Struct(">HQH")
_INFO_BLOCK_SIZE = struct.Struct(">HIII")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
REQUEST = struct.Struct(">IHHQQI")  # magic, command flags, type, handle, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, handle
CHUNK_HEADER = struct.Struct(">IHHQI")  # magic, flags, type, handle, payload length
_READ_CHUNK = struct.Struct(">IHHQIQ")  # chunk header + offset of NBD_REPLY_TYPE_OFFSET_DATA
_ERROR_PAYLOAD = struct.Struct(">IH")
_DESCRIPTOR = struct.Struct(">II")


class NbdProtocolError(NbdError):
    """The peer broke the protocol: the connection ends (in an option payload: ERR_INVALID)."""


class Request(NamedTuple):
    """One transmission request ("Request message")."""

    flags: int
    type: int
    handle: int
    offset: int
    length: int


@dataclass(frozen=True)
class InfoRequest:
    """Payload of NBD_OPT_INFO / NBD_OPT_GO."""

    name: str
    info_types: tuple[int, ...]


@dataclass(frozen=True)
class MetaContextRequest:
    """Payload of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT."""

    name: str
    queries: tuple[str, ...]


# -- handshake packing/parsing -------------------------------------------------------------------
def pack_greeting() -> bytes:
    """The server's first 18 bytes: fixed newstyle, and we can omit the 124 zero bytes."""
    return _GREETING.pack(NBDMAGIC, IHAVEOPT, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)


def parse_client_flags(buf: bytes) -> int:
    """:raises NbdProtocolError: on unknown bits, which the spec says end the session."""
    (flags,) = _CLIENT_FLAGS.unpack(buf)
    if flags & ~KNOWN_CLIENT_FLAGS:
        raise NbdProtocolError(f"nbd: unknown client flags {flags:#x}")
    return int(flags)


def parse_option_header(buf: bytes) -> tuple[int, int]:
    """``(option, length)`` of a client option header.

    :raises NbdProtocolError: on a wrong magic or an option longer than we accept.
    """
    magic, option, length = OPTION_HEADER.unpack(buf)
    if magic != IHAVEOPT:
        raise NbdProtocolError(f"nbd: bad option magic {magic:#x}")
    if length > MAX_OPTION_LENGTH:
        raise NbdProtocolError(f"nbd: option {option} is {length} bytes long")
    return int(option), int(length)


def pack_option_reply(option: int, reply_type: int, data: bytes = b"") -> bytes:
    return _OPTION_REPLY.pack(REPLY_MAGIC, option, reply_type, len(data)) + data


def pack_export_name_reply(size: int, flags: int, no_zeroes: bool) -> bytes:
    """Answer to NBD_OPT_EXPORT_NAME: size, flags and, unless NO_ZEROES, 124 zero bytes."""
    return _EXPORT_NAME_REPLY.pack(size, flags) + (b"" if no_zeroes else bytes(124))


def pack_info_export(size: int, flags: int) -> bytes:
    return _INFO_EXPORT.pack(NBD_INFO_EXPORT, size, flags)


def pack_info_block_size(minimum: int, preferred: int, maximum: int) -> bytes:
    return _INFO_BLOCK_SIZE.pack(NBD_INFO_BLOCK_SIZE, minimum, preferred, maximum)


def pack_info_name(name: str) -> bytes:
    return _U16.pack(NBD_INFO_NAME) + name.encode()


def pack_server_reply(name: str) -> bytes:
    """NBD_REP_SERVER payload for NBD_OPT_LIST: length-prefixed export name."""
    raw = name.encode()
    return _U32.pack(len(raw)) + raw


def pack_meta_context_reply(context_id: int, name: str) -> bytes:
    return _U32.pack(context_id) + name.encode()


class _Cursor:
    """Reads length-prefixed fields of an option payload, raising on truncation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise NbdProtocolError("nbd: option payload is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def string(self, n: int) -> str:
        if n > MAX_STRING:
            raise NbdProtocolError(f"nbd: string of {n} bytes is longer than {MAX_STRING}")
        try:
            return self.take(n).decode()
        except UnicodeDecodeError as err:
            raise NbdProtocolError("nbd: string is not UTF-8") from err

    def end(self) -> None:
        if self.pos != len(self.data):
            raise NbdProtocolError("nbd: option payload has trailing bytes")


def parse_info_request(data: bytes) -> InfoRequest:
    """:raises NbdProtocolError: when the NBD_OPT_INFO/GO payload is malformed."""
    cur = _Cursor(data)
    name = cur.string(cur.u32())
    count = cur.u16()
    types = tuple(cur.u16() for _ in range(count))
    cur.end()
    return InfoRequest(name, types)


def parse_meta_context_request(data: bytes) -> MetaContextRequest:
    """:raises NbdProtocolError: when the META_CONTEXT payload is malformed."""
    cur = _Cursor(data)
    name = cur.string(cur.u32())
    count = cur.u32()
    queries = tuple(cur.string(cur.u32()) for _ in range(count))
    cur.end()
    return MetaContextRequest(name, queries)


# -- transmission packing/parsing ----------------------------------------------------------------


def parse_request(buf: bytes) -> Request:
    """:raises NbdProtocolError: on a wrong request magic (the stream is out of sync)."""
    magic, flags, cmd, handle, offset, length = REQUEST.unpack(buf)
    if magic != NBD_REQUEST_MAGIC:
        raise NbdProtocolError(f"nbd: bad request magic {magic:#x}")
    return Request(flags, cmd, handle, offset, length)


def pack_simple_reply(error: int, handle: int) -> bytes:
    return SIMPLE_REPLY.pack(NBD_SIMPLE_REPLY_MAGIC, error, handle)


def pack_read_chunk_header(handle: int, offset: int, length: int) -> bytes:
    """Header of the single NBD_REPLY_TYPE_OFFSET_DATA chunk (flag DONE) that carries a read."""
    return _READ_CHUNK.pack(
        NBD_STRUCTURED_REPLY_MAGIC,
        NBD_REPLY_FLAG_DONE,
        NBD_REPLY_TYPE_OFFSET_DATA,
        handle,
        8 + length,
        offset,
    )


def pack_error_chunk(handle: int, error: int, message: str = "") -> bytes:
    """NBD_REPLY_TYPE_ERROR with flag DONE: how a structured reply reports a failure."""
    msg = message.encode()[:MAX_STRING]
    payload = _ERROR_PAYLOAD.pack(error, len(msg)) + msg
    return (
        CHUNK_HEADER.pack(
            NBD_STRUCTURED_REPLY_MAGIC,
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_ERROR,
            handle,
            len(payload),
        )
        + payload
    )


def pack_block_status_chunk(
    handle: int, context_id: int, descriptors: list[tuple[int, int]]
) -> bytes:
    """NBD_REPLY_TYPE_BLOCK_STATUS with flag DONE: context id then (length, status) pairs."""
    payload = _U32.pack(context_id) + b"".join(_DESCRIPTOR.pack(n, s) for n, s in descriptors)
    return (
        CHUNK_HEADER.pack(
            NBD_STRUCTURED_REPLY_MAGIC,
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_BLOCK_STATUS,
            handle,
            len(payload),
        )
        + payload
    )


# -- transmission rules (what to answer, before touching the image) ------------------------------
_KNOWN_FLAGS = {
    NBD_CMD_READ: NBD_CMD_FLAG_DF,
    NBD_CMD_WRITE: NBD_CMD_FLAG_FUA,
    NBD_CMD_FLUSH: 0,
    NBD_CMD_TRIM: NBD_CMD_FLAG_FUA,
    NBD_CMD_WRITE_ZEROES: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
    NBD_CMD_BLOCK_STATUS: NBD_CMD_FLAG_REQ_ONE,
}
#: Requests that change the image.
MUTATING = frozenset({NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES})


def check_request(req: Request, size: int, read_only: bool, block_status: bool) -> int:
    """The NBD errno to refuse ``req`` with, or 0 when the image should serve it.

    Follows "Error values" and "Request types": unknown commands and flags → EINVAL; writes or
    trims on a read-only export → EPERM; ranges past the end → ENOSPC for writes and write
    zeroes, EINVAL otherwise; BLOCK_STATUS without a negotiated context (or of 0 bytes, which
    has no valid answer) → EINVAL.
    """
    known = _KNOWN_FLAGS.get(req.type)
    if known is None or req.flags & ~known:
        return NBD_EINVAL
    if read_only and req.type in MUTATING:
        return NBD_EPERM
    if req.type == NBD_CMD_BLOCK_STATUS and not (block_status and req.length):
        return NBD_EINVAL
    if req.type == NBD_CMD_READ and req.length > MAX_PAYLOAD:
        return NBD_EINVAL
    if req.offset + req.length > size:
        return NBD_ENOSPC if req.type in (NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES) else NBD_EINVAL
    return 0


def errno_for(exc: BaseException, cmd: int) -> int:
    """Map an image failure onto the few errno values NBD allows ("Error values").

    Storage errors wrap the ``OSError`` they came from (``raise … from``), so the cause decides.
    """
    if isinstance(exc, OutOfBounds):
        return NBD_ENOSPC if cmd in (NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES) else NBD_EINVAL
    if not isinstance(exc, OSError) and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return NBD_ENOSPC
        if exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
            return NBD_EPERM
        if exc.errno == errno.ENOMEM:
            return NBD_ENOMEM
        if exc.errno == errno.EINVAL:
            return NBD_EINVAL
    if isinstance(exc, MemoryError):
        return NBD_ENOMEM
    return NBD_EIO


def block_status_descriptors(
    extents: Iterable[Extent], offset: int, length: int, req_one: bool
) -> list[tuple[int, int]]:
    """``base:allocation`` descriptors for ``[offset, offset+length)``.

    DATA → 0; ZERO → HOLE|ZERO (the image does not store it and it reads as zeros). Extents are
    clipped to the request (a descriptor MUST NOT be 0 bytes, and with REQ_ONE only one is sent).
    Uncovered ranges are reported as data, the safe answer.
    """
    out: list[tuple[int, int]] = []
    pos, end = offset, offset + length
    for ext in extents:
        if ext.end <= pos or ext.offset >= end:
            continue
        if ext.offset > pos:
            _append(out, ext.offset - pos, 0)
            pos = ext.offset
        n = min(ext.end, end) - pos
        status = NBD_STATE_HOLE | NBD_STATE_ZERO if ext.state == ExtentState.ZERO else 0
        _append(out, n, status)
        pos += n
        if pos >= end:
            break
    if pos < end:
        _append(out, end - pos, 0)
    return out[:1] if req_one else out


def _append(out: list[tuple[int, int]], n: int, status: int) -> None:
    if out and out[-1][1] == status:
        out[-1] = (out[-1][0] + n, status)
    else:
        out.append((n, status))
