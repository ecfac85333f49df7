"""A tiny reader for the ELF64 little-endian facts the guest kit needs, with no I/O.

The kit takes shared libraries from Debian packages, never from the host, so it cannot ask the
host's ``ldd``; it reads the ``DT_NEEDED`` entries, the program interpreter and the kernel
modules' ``.modinfo`` section itself. Only x86-64 (ELFCLASS64, little endian) is accepted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyhv.errors import PyhvError

_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_PT_DYNAMIC = 2
_PT_INTERP = 3
_PT_LOAD = 1
_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5


class ElfError(PyhvError):
    """The file is not an ELF64 little-endian object or its tables point outside it."""


@dataclass(frozen=True)
class _Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int


def is_elf(data: bytes) -> bool:
    return data[:4] == _MAGIC


def _check(data: bytes) -> None:
    if not is_elf(data) or len(data) < 64:
        raise ElfError("not an ELF file")
    if data[4] != _ELFCLASS64 or data[5] != _ELFDATA2LSB:
        raise ElfError("not a 64-bit little-endian ELF file")


def _slice(data: bytes, offset: int, size: int) -> bytes:
    if offset < 0 or size < 0 or offset + size > len(data):
        raise ElfError(f"ELF table at {offset:#x}+{size:#x} lies outside the file")
    return data[offset : offset + size]


def _segments(data: bytes) -> list[_Segment]:
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 0x20)[0],
        *struct.unpack_from("<HH", data, 0x36),
    )
    result = []
    for i in range(phnum):
        entry = _slice(data, phoff + i * phentsize, 56)
        p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", entry)
        result.append(_Segment(p_type, offset, vaddr, filesz))
    return result


def _cstring(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    if offset >= len(data) or end < 0:
        raise ElfError(f"string at {offset:#x} is not terminated")
    return data[offset:end].decode()


def _vaddr_to_offset(segments: list[_Segment], vaddr: int) -> int:
    for seg in segments:
        if seg.type == _PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            return seg.offset + (vaddr - seg.vaddr)
    raise ElfError(f"address {vaddr:#x} is in no loaded segment")


def interpreter(data: bytes) -> str | None:
    """The program interpreter (dynamic loader) path, or None for static binaries and libraries."""
    _check(data)
    for seg in _segments(data):
        if seg.type == _PT_INTERP:
            return _slice(data, seg.offset, seg.filesz).rstrip(b"\0").decode()
    return None


def needed(data: bytes) -> list[str]:
    """The ``DT_NEEDED`` sonames, in file order; empty for static binaries."""
    _check(data)
    segments = _segments(data)
    dynamic = next((s for s in segments if s.type == _PT_DYNAMIC), None)
    if dynamic is None:
        return []
    table = _slice(data, dynamic.offset, dynamic.filesz)
    strtab_vaddr = None
    name_offsets = []
    for pos in range(0, len(table) - 15, 16):
        tag, value = struct.unpack_from("<qQ", table, pos)
        if tag == _DT_NULL:
            break
        if tag == _DT_NEEDED:
            name_offsets.append(value)
        elif tag == _DT_STRTAB:
            strtab_vaddr = value
    if not name_offsets:
        return []
    if strtab_vaddr is None:
        raise ElfError("dynamic section has DT_NEEDED but no DT_STRTAB")
    strtab = _vaddr_to_offset(segments, strtab_vaddr)
    return [_cstring(data, strtab + off) for off in name_offsets]


def section(data: bytes, name: str) -> bytes | None:
    """The contents of the section called ``name`` (e.g. ``.modinfo``), or None if absent."""
    _check(data)
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = []
    for i in range(shnum):
        entry = _slice(data, shoff + i * shentsize, 64)
        sh_name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", entry)
        headers.append((sh_name, offset, size))
    if not headers or shstrndx >= len(headers):
        return None
    names_offset = headers[shstrndx][1]
    for sh_name, offset, size in headers:
        if _cstring(data, names_offset + sh_name) == name:
            return _slice(data, offset, size)
    return None
