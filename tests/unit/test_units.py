"""Sizes as users type them."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pyhv.errors import UsageError
from pyhv.units import GiB, KiB, MiB, TiB, format_size, parse_mib, parse_size


@pytest.mark.parametrize(
    ("text", "mib"), [("512M", 512), ("2G", 2048), ("1.5G", 1536), (str(GiB), 1024), ("1GiB", 1024)]
)
def test_whole_mib(text: str, mib: int) -> None:
    assert parse_mib(text, "--memory") == mib


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Bytes, where qm and virsh read MiB: it was rounded down to 0 MiB.
        ("512", "--memory 512 is bytes, not a whole number of MiB: give a unit, e.g. 512M or 2G"),
        (str(MiB + 1), f"--memory {MiB + 1} is bytes, not a whole number of MiB"),
        ("100K", "--memory 100K is not a whole number of MiB"),
        ("1.5M", "--memory 1.5M is not a whole number of MiB"),
        ("lots", "invalid size 'lots'"),
    ],
)
def test_not_whole_mib_is_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_mib(text, "--memory")
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("4096", 4096),
        ("10G", 10 * GiB),
        ("512m", 512 * MiB),
        ("1T", TiB),
        ("1.5G", 3 * GiB // 2),
        ("0.5K", 512),
        (" 1.5 gib ", 3 * GiB // 2),
        ("1KB", KiB),
        ("2P", 2048 * TiB),
        ("1.50000G", 3 * GiB // 2),
        ("007M", 7 * MiB),
        ("\u0663G", 3 * GiB),  # ARABIC-INDIC DIGIT THREE: \d took it, as float() did
        # Beyond 2**53, where floats garbled them: exact now.
        ("123456789012345678901", 123456789012345678901),
        ("9999999999999999999999T", 9999999999999999999999 * TiB),
        ("9007199254740993", 2**53 + 1),
        ("1." + "0" * 5000 + "K", KiB),
        ("0" * 5000 + "1K", KiB),
    ],
)
def test_sizes_are_exact(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # floats rounded these to whole bytes (1G, and 3141945121654702 bytes) and took them
        ("1.0000000000000001G", "not a whole number of bytes"),
        ("2926164.42G", "not a whole number of bytes"),
        ("0.5", "not a whole number of bytes"),
        ("0.00048828125K", "not a whole number of bytes"),
        ("1.000000000000000000000000000001P", "not a whole number of bytes"),
        ("1." + "0" * 60 + "1", "not a whole number of bytes"),
        ("1" * 401, "too large"),  # floats overflowed here: a traceback
        ("1e3", "use bytes or a number with K, M, G or T"),
        (".5G", "use bytes or a number with K, M, G or T"),
        ("-5G", "use bytes or a number with K, M, G or T"),
        ("", "use bytes or a number with K, M, G or T"),
    ],
)
def test_refusals_echo_the_text_typed(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_size(text)
    assert str(err.value) == f"invalid size {text!r}: {reason}"
    assert err.value.exit_code == 2


def test_huge_not_whole_mib_names_the_text() -> None:
    text = "123456789012345678901"
    with pytest.raises(UsageError) as err:
        parse_mib(text, "--memory")
    assert str(err.value).startswith(f"--memory {text} is bytes, not a whole number of MiB")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1000, "1000 B"),
        (KiB, "1K"),
        (10 * GiB, "10G"),
        (3 * MiB // 2, "1536K"),
        (2000384, "1.9 MiB"),
        (1280, "1.2 KiB"),  # 1.25: half to even, as the float form did
        (1280 + 512, "1.8 KiB"),  # 1.75
        (KiB + 51, "1.0 KiB"),
        (KiB + 52, "1.1 KiB"),
        (9999999999999999999999 * TiB, "9999999999999999999999T"),
        (123456789012345678901, "112283295.5 TiB"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


def test_format_size_rounds_exactly_at_any_size() -> None:
    """One decimal, half to even, without a float (which overflows past 10**308 TiB)."""
    for n in (10**400 + 1, 10**400 + TiB // 20 + 1, 3 * 10**350 + TiB // 2 + 1, 2**60 + 3):
        tenths = round(Fraction(10 * n, TiB))
        assert format_size(n) == f"{tenths // 10}.{tenths % 10} TiB"


def test_format_size_reads_back_exactly() -> None:
    for n in (KiB, 5 * MiB, 7 * GiB, 9999999999999999999999 * TiB, 3 * 1024 * TiB):
        assert parse_size(format_size(n)) == n
