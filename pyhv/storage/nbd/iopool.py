"""Threads that run image calls for the event loop, with as few thread wake-ups as possible.

Why not ``loop.run_in_executor``: thread wake-ups are what a request costs here (on the build
machine a futex wake or a self-pipe write costs tens of µs). ``ThreadPoolExecutor`` chains two
futures across threads and wakes the loop once per result: a 4 KiB ``pread`` round trip took
65-90 µs through it, 28 µs through a bare queue and one thread. This pool differs in three ways:

* the most recently idle worker takes the next job (LIFO), so at low queue depth one warm
  thread does the work instead of all of them taking turns;
* completions go on a deque that the loop drains when it runs anyway (``run_completions``,
  called by the connection for every request it reads), so a completion does not wake the loop;
* only while the loop waits for completions (``settle``: swap, removal, a full connection) does
  a finished job wake it, once per batch.

The replies themselves do not wait for any of this: the job sends its own reply (see
:mod:`.connection`); what is deferred is only bookkeeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: ``callback(result, exception)``, called on the loop thread; exactly one of them is set.
Completion = Callable[[Any, BaseException | None], None]
_Job = tuple[Callable[..., Any], tuple[Any, ...], Completion]


class _Worker:
    def __init__(self) -> None:
        self.wake = threading.Lock()  # held while idle; released to hand over a job
        self.wake.acquire()
        self.job: _Job | None = None


class IoPool:
    """``threads`` daemon threads serving ``submit`` calls made on ``loop``'s thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the last to go idle is the first to work
        self._backlog: deque[_Job | None] = deque()  # jobs no idle worker could take
        self._done: deque[tuple[Completion, Any, BaseException | None]] = deque()
        self._waiters = 0  # loop-side waiters that need completions as they happen
        self._wake_pending = False
        self._threads = [
            threading.Thread(target=self._work, args=(_Worker(),), name=f"nbd-io-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, func: Callable[..., Any], args: tuple[Any, ...], done: Completion) -> None:
        """Run ``func(*args)`` in a worker; ``done`` gets its result or exception on the loop."""
        self._hand_over((func, args, done))

    def run_completions(self) -> None:
        """Run the callbacks of every job finished so far (loop thread)."""
        self._wake_pending = False
        done = self._done
        while done:
            callback, result, exc = done.popleft()
            callback(result, exc)

    async def settle(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` (something completions will bring about) with completions waking us."""
        self._waiters += 1
        try:
            self.run_completions()
            return await aw
        finally:
            self._waiters -= 1

    def shutdown(self) -> None:
        """Stop the workers after the jobs already queued; blocks until they have exited."""
        for _ in self._threads:
            self._hand_over(None)
        for t in self._threads:
            t.join()

    def _hand_over(self, job: _Job | None) -> None:
        with self._lock:
            if not self._idle:
                self._backlog.append(job)
                return
            worker = self._idle.pop()
        worker.job = job
        worker.wake.release()

    def _work(self, me: _Worker) -> None:
        while True:
            with self._lock:
                queued = bool(self._backlog)
                if queued:
                    job = self._backlog.popleft()
                else:
                    self._idle.append(me)
            if not queued:
                me.wake.acquire()
                job, me.job = me.job, None
            if job is None:  # shutdown
                return
            func, args, done = job
            try:
                item: tuple[Completion, Any, BaseException | None] = (done, func(*args), None)
            except BaseException as exc:  # handed to the loop, which accounts for the failure
                item = (done, None, exc)
            self._done.append(item)
            # Under the GIL these flags are enough: ``settle`` raises ``_waiters`` before it
            # drains, and ``run_completions`` clears ``_wake_pending`` before it drains, so a
            # completion is either drained by them or sees the flags and wakes the loop.
            if self._waiters and not self._wake_pending:
                self._wake_pending = True
                self._loop.call_soon_threadsafe(self.run_completions)
