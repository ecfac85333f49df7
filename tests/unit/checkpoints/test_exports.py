"""The package's public surface is exactly ``__all__``, sorted."""

import pyhv.checkpoints as checkpoints


def test_all_is_sorted_and_complete() -> None:
    assert checkpoints.__all__ == sorted(checkpoints.__all__)
    assert all(hasattr(checkpoints, name) for name in checkpoints.__all__)
