"""Human sizes ("10G", "512M", "1T", "4096") to bytes and back, binary units as Hyper-V uses.

All arithmetic is on integers: a size is exact however large, and ``1.0000000000000001G`` is
not taken for ``1G`` (floats would round it, and garble sizes beyond 2**53 bytes).
"""

from __future__ import annotations

import re

from pyhv.errors import UsageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_SUFFIX = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": 1024 * TiB}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
# Far beyond any disk (10**400 bytes), and far below the digits Python converts to int (4300).
_MAX_DIGITS = 400
# With trailing zeros dropped, a fraction of more digits than this is never whole bytes: k
# digits are 1/10**k, and the largest unit (P = 2**50) cancels at most 50 of the 2s.
_MAX_WHOLE_FRACTION_DIGITS = 50


def parse_size(text: str) -> int:
    """Parse ``10G``, ``512M``, ``1.5G``, ``1TiB`` or plain bytes, exactly.

    A number that is not a whole number of bytes (``0.5``, ``1.0000000000000001G``) is refused,
    never rounded.

    :raises UsageError: when the text is not a size, or not a whole number of bytes.
    """
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"invalid size {text!r}: use bytes or a number with K, M, G or T")
    number, suffix = m.groups()
    # \d takes any script's digits, as float() did; int() reads each of them.
    whole, _, fraction = "".join(c if c == "." else str(int(c)) for c in number).partition(".")
    whole, fraction = whole.lstrip("0"), fraction.rstrip("0")
    if len(whole) > _MAX_DIGITS:
        raise UsageError(f"invalid size {text!r}: too large")
    if len(fraction) > _MAX_WHOLE_FRACTION_DIGITS:
        raise UsageError(f"invalid size {text!r}: not a whole number of bytes")
    scaled = int(whole + fraction or "0") * _SUFFIX[suffix.upper()]
    value, rest = divmod(scaled, 10 ** len(fraction))
    if rest:
        raise UsageError(f"invalid size {text!r}: not a whole number of bytes")
    return value


def parse_mib(text: str, what: str) -> int:
    """A size that must be whole MiB (startup memory), in MiB.

    Refused rather than rounded down: ``--memory 512`` (bytes, where ``qm`` and ``virsh`` read
    MiB) would otherwise become 0 MiB, and the error would name a value nobody typed.

    :raises UsageError: when the text is not a size, or not a whole number of MiB.
    """
    size = parse_size(text)
    if size % MiB == 0:
        return size // MiB
    if text.strip().isdigit():
        raise UsageError(
            f"{what} {text} is bytes, not a whole number of MiB: give a unit, e.g. 512M or 2G"
        )
    raise UsageError(f"{what} {text} is not a whole number of MiB")


def format_size(n: int) -> str:
    """Shortest exact binary form when there is one (``10G``), else a rounded one (``1.5 GiB``).

    The rounded form is to one decimal, half to even, computed on integers (exact at any size).
    """
    for suffix, unit in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    for suffix, unit in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= unit:
            tenths, rest = divmod(n * 10, unit)
            if 2 * rest > unit or (2 * rest == unit and tenths % 2):
                tenths += 1
            return f"{tenths // 10}.{tenths % 10} {suffix}"
    return f"{n} B"
