"""Synthetic ELF64 files, so the ELF reader and the library closure are tested without binaries."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

_BASE = 0x400000


def make_elf(
    needed: list[str] | None = None,
    interp: str | None = None,
    sections: dict[str, bytes] | None = None,
) -> bytes:
    """An ELF64 LE file with one PT_LOAD over everything, optional PT_INTERP and PT_DYNAMIC."""
    needed = needed or []
    sections = sections or {}
    phnum = 1 + (interp is not None) + bool(needed)
    body = bytearray()
    start = 64 + 56 * phnum

    def place(data: bytes) -> int:
        while (start + len(body)) % 8:
            body.append(0)
        offset = start + len(body)
        body.extend(data)
        return offset

    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in needed)
    strtab_off = place(strtab)
    name_offsets = []
    pos = 1
    for n in needed:
        name_offsets.append(pos)
        pos += len(n) + 1
    dynamic = b"".join(struct.pack("<qQ", 1, o) for o in name_offsets)
    dynamic += struct.pack("<qQ", 5, _BASE + strtab_off) + struct.pack("<qQ", 0, 0)
    dyn_off = place(dynamic) if needed else 0
    interp_bytes = interp.encode() + b"\0" if interp else b""
    interp_off = place(interp_bytes) if interp else 0
    shstrtab = b"\0"
    section_headers = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for name, data in sections.items():
        sec_off = place(data)
        section_headers.append(
            struct.pack("<IIQQQQIIQQ", len(shstrtab), 1, 0, 0, sec_off, len(data), 0, 0, 1, 0)
        )
        shstrtab += name.encode() + b"\0"
    names_off = place(shstrtab)
    section_headers.append(
        struct.pack("<IIQQQQIIQQ", len(shstrtab), 3, 0, 0, names_off, len(shstrtab), 0, 0, 1, 0)
    )
    shstrtab_index = len(section_headers) - 1
    shoff = place(b"".join(section_headers))
    total = start + len(body)

    phdrs = [struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, total, total, 0x1000)]
    if interp:
        phdrs.append(struct.pack("<IIQQQQQQ", 3, 4, interp_off, 0, 0, len(interp_bytes), 0, 1))
    if needed:
        phdrs.append(struct.pack("<IIQQQQQQ", 2, 6, dyn_off, 0, 0, len(dynamic), 0, 8))
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        3,  # ET_DYN
        62,  # EM_X86_64
        1,
        0,
        64,
        shoff,
        0,
        64,
        56,
        phnum,
        64,
        len(section_headers),
        shstrtab_index,
    )
    return header + b"".join(phdrs) + bytes(body)


@pytest.fixture
def elf_file() -> Callable[..., bytes]:
    return make_elf
