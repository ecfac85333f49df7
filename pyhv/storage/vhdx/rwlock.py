"""A small shared/exclusive lock: data I/O shares it, block moves (compact, resize) take it
alone so no reader is in flight while a block changes place."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SharedExclusiveLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._owner: int | None = None

    @contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._owner == me:  # already exclusive in this thread: nested use is fine
            yield
            return
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._owner == me:
            yield
            return
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive, self._owner = True, me
        try:
            yield
        finally:
            with self._cond:
                self._exclusive, self._owner = False, None
                self._cond.notify_all()
