"""A small shared/exclusive lock: data I/O shares it, block moves (compact, resize) take it
alone so no reader is in flight while a block changes place; readers that must not wait use
its sequence stamp instead of a share.

Every VHDX read and write request takes a share, so that path is kept cheap: a plain lock
around a counter, no generator, and a notify only when an exclusive user waits for the last
share to go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType


class _Share:
    """The context manager :meth:`SharedExclusiveLock.shared` returns (one per lock, reused).

    A thread inside its own exclusive use passes through: it is the owner on entry and still
    on exit (taking exclusive use inside a share would wait for itself, so never happens).
    """

    __slots__ = ("_rw",)

    def __init__(self, rw: SharedExclusiveLock) -> None:
        self._rw = rw

    def __enter__(self) -> None:
        rw = self._rw
        if rw._owner == threading.get_ident():
            return
        with rw._lock:
            while rw._exclusive:
                rw._cond.wait()
            rw._shared += 1

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        rw = self._rw
        if rw._owner == threading.get_ident():
            return
        with rw._lock:
            rw._shared -= 1
            if not rw._shared and rw._waiting:
                rw._cond.notify_all()


class SharedExclusiveLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._shared = 0
        self._exclusive = False
        self._owner: int | None = None
        self._waiting = 0  # threads waiting in exclusive() for the shares to go
        self._moves = 0  # bumped as exclusive use begins and ends (see ``stamp``)
        self._share = _Share(self)

    def shared(self) -> _Share:
        """``with lock.shared():`` — waits while a block move runs."""
        return self._share

    def stamp(self) -> int | None:
        """For a reader that must not wait (the NBD event loop) and so takes no share: None
        while exclusive use is under way, else a stamp for :meth:`unchanged`.

        A sequence lock: exclusive use bumps a counter when it begins and when it ends, so a
        reader whose stamp is unchanged after its reads knows no block moved meanwhile, and
        otherwise throws what it read away. Cheaper than a share (no lock at all) on a path
        taken for every cached 4 KiB read.
        """
        return None if self._exclusive else self._moves

    def unchanged(self, stamp: int) -> bool:
        """No exclusive use began or ended since ``stamp`` was taken."""
        return self._moves == stamp and not self._exclusive

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._owner == me:
            yield
            return
        with self._lock:
            self._waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive, self._owner = True, me
            self._moves += 1
        try:
            yield
        finally:
            with self._lock:
                self._moves += 1
                self._exclusive, self._owner = False, None
                self._cond.notify_all()  # held shares and other block moves go on
