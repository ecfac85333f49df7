"""The package's public surface is exactly its ``__all__``."""

from __future__ import annotations

import pyhv.storage.nbd as nbd


def test_all_is_sorted_and_importable() -> None:
    assert nbd.__all__ == sorted(nbd.__all__)
    for name in nbd.__all__:
        assert getattr(nbd, name) is not None
