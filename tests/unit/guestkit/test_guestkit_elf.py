from __future__ import annotations

from collections.abc import Callable

import pytest

from pyhv.guestkit import elf


def test_needed_and_interpreter_of_a_program(elf_file: Callable[..., bytes]) -> None:
    data = elf_file(needed=["libglib-2.0.so.0", "libc.so.6"], interp="/lib64/ld-linux-x86-64.so.2")
    assert elf.needed(data) == ["libglib-2.0.so.0", "libc.so.6"]
    assert elf.interpreter(data) == "/lib64/ld-linux-x86-64.so.2"


def test_static_binary_has_neither(elf_file: Callable[..., bytes]) -> None:
    data = elf_file()
    assert elf.needed(data) == []
    assert elf.interpreter(data) is None


def test_section_by_name(elf_file: Callable[..., bytes]) -> None:
    data = elf_file(sections={".text": b"\x90" * 4, ".modinfo": b"depends=a,b\0name=c\0"})
    assert elf.section(data, ".modinfo") == b"depends=a,b\0name=c\0"
    assert elf.section(data, ".missing") is None


def test_not_elf_is_one_line_error() -> None:
    with pytest.raises(elf.ElfError) as err:
        elf.needed(b"#!/bin/sh\n" + b"\0" * 64)
    assert "\n" not in str(err.value)


def test_table_outside_file_is_refused(elf_file: Callable[..., bytes]) -> None:
    data = elf_file(needed=["libc.so.6"])
    with pytest.raises(elf.ElfError, match="outside the file"):
        elf.needed(data[:100])
