"""What each NBD command does to a :class:`~pyhv.storage.image.DiskImage`; runs in I/O threads.

# Ref: NBD protocol ``doc/proto.md``, "Request types" and "Metadata querying".

Every function has the same shape ``(image, request, payload) -> result`` so the server can hand
any of them to its thread pool. They return only after the image call returned: a write has
reached the kernel (``DiskImage.write``'s contract), and with NBD_CMD_FLAG_FUA (or a FLUSH) the
data is durable (``DiskImage.flush`` fsyncs). The reply is built from the result afterwards,
which is what makes "never acknowledge before the kernel has it" hold.
"""

from __future__ import annotations

from collections.abc import Callable

from pyhv.errors import NbdError
from pyhv.storage.image import DiskImage
from pyhv.storage.nbd import protocol as p

_ZERO_CHUNK = bytes(1 << 20)

Result = bytes | list[tuple[int, int]] | None
Command = Callable[[DiskImage, p.Request, bytes], Result]


def read(image: DiskImage, req: p.Request, payload: bytes) -> bytes:
    """The data (any bytes-like object); a short read would desynchronise the stream.

    :raises NbdError: if the image returned another length than asked for.
    """
    data = image.read(req.offset, req.length)
    if len(data) != req.length:
        raise NbdError(f"nbd: {image.path}: read of {req.length} bytes returned {len(data)}")
    return data


def write(image: DiskImage, req: p.Request, payload: bytes) -> None:
    image.write(req.offset, payload)
    if req.flags & p.NBD_CMD_FLAG_FUA:
        image.flush()


def flush(image: DiskImage, req: p.Request, payload: bytes) -> None:
    image.flush()


def trim(image: DiskImage, req: p.Request, payload: bytes) -> None:
    image.discard(req.offset, req.length)
    if req.flags & p.NBD_CMD_FLAG_FUA:
        image.flush()


def write_zeroes(image: DiskImage, req: p.Request, payload: bytes) -> None:
    """NBD_CMD_WRITE_ZEROES; with NBD_CMD_FLAG_NO_HOLE the range must stay allocated.

    ``DiskImage.write_zeroes`` may punch holes, so NO_HOLE writes real zeros instead.
    """
    if req.flags & p.NBD_CMD_FLAG_NO_HOLE:
        pos, end = req.offset, req.offset + req.length
        while pos < end:
            n = min(len(_ZERO_CHUNK), end - pos)
            image.write(pos, _ZERO_CHUNK[:n])
            pos += n
    else:
        image.write_zeroes(req.offset, req.length)
    if req.flags & p.NBD_CMD_FLAG_FUA:
        image.flush()


def block_status(image: DiskImage, req: p.Request, payload: bytes) -> list[tuple[int, int]]:
    """``base:allocation`` of the range as seen through the whole chain."""
    extents = image.extents(req.offset, req.length, chain=True)
    req_one = bool(req.flags & p.NBD_CMD_FLAG_REQ_ONE)
    return p.block_status_descriptors(extents, req.offset, req.length, req_one)


#: Command number → (function, name of its counter in :class:`~.stats.ExportStats`).
COMMANDS: dict[int, tuple[Command, str]] = {
    p.NBD_CMD_READ: (read, "read"),
    p.NBD_CMD_WRITE: (write, "write"),
    p.NBD_CMD_FLUSH: (flush, "flush"),
    p.NBD_CMD_TRIM: (trim, "trim"),
    p.NBD_CMD_WRITE_ZEROES: (write_zeroes, "write_zeroes"),
    p.NBD_CMD_BLOCK_STATUS: (block_status, "block_status"),
}
