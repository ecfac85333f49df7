"""The package's public surface is exactly ``__all__``, sorted."""

from __future__ import annotations

import pyhv.storage
import pyhv.storage.vhd


def test_all_is_sorted_and_complete() -> None:
    for module in (pyhv.storage, pyhv.storage.vhd):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name)
    assert callable(pyhv.storage.open_image) and callable(pyhv.storage.create_image)
