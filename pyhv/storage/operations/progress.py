"""The progress callback every long disk operation takes, so the CLI and the API can show it.

A callback receives ``(done, total)`` in bytes; ``total`` is fixed before the first call and
``done`` only grows. Callbacks may be called from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]


def _ignore(done: int, total: int) -> None:
    """The callback used when the caller passes none, so operations never test for None."""


def or_ignore(progress: Progress | None) -> Progress:
    return progress if progress is not None else _ignore
