"""Sizes as users type them."""

from __future__ import annotations

import pytest

from pyhv.errors import UsageError
from pyhv.units import GiB, MiB, parse_mib


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
