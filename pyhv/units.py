"""Human sizes ("10G", "512M", "1T", "4096") to bytes and back, binary units as Hyper-V uses."""

from __future__ import annotations

import re

from pyhv.errors import UsageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_SUFFIX = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": 1024 * TiB}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse ``10G``, ``512M``, ``1.5G``, ``1TiB`` or plain bytes.

    :raises UsageError: when the text is not a size.
    """
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"invalid size {text!r}: use bytes or a number with K, M, G or T")
    number, suffix = m.groups()
    value = float(number) * _SUFFIX[suffix.upper()]
    if value != int(value):
        raise UsageError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


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
    """Shortest exact binary form when there is one (``10G``), else a rounded one (``1.5 GiB``)."""
    for suffix, unit in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    for suffix, unit in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= unit:
            return f"{n / unit:.1f} {suffix}"
    return f"{n} B"
