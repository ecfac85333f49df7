"""The copy loop behind convert and merge: big sequential reads, reads overlapped with writes.

A reader thread fetches the next chunk while the caller's thread writes the previous one;
``os.pread``/``os.pwrite`` release the GIL, so the two really run at the same time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from typing import cast

from pyhv.storage.image import DiskImage
from pyhv.storage.operations.progress import Progress, or_ignore
from pyhv.storage.operations.ranges import Range, is_zero, nonzero_runs, split_aligned
from pyhv.units import KiB, MiB

CHUNK = 8 * MiB
PREFETCH_DEPTH = 3
# Holes finer than this are not worth a separate write in images without blocks (raw, fixed).
MIN_HOLE = 64 * KiB

_DONE = object()


def prefetch(
    read: Callable[[int, int], bytes], pieces: Sequence[Range]
) -> Generator[tuple[int, bytes], None, None]:
    """Yield ``(offset, read(offset, length))`` for each piece, read ahead in a background thread.

    Errors of the reader are raised in the consumer; closing the generator stops the thread.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=PREFETCH_DEPTH)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for off, n in pieces:
                if not put((off, read(off, n))):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, who re-raises it
            put(e)

    thread = threading.Thread(target=reader, name="pyhv-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(tuple[int, bytes], item)
    finally:
        stop.set()
        thread.join()


def _grain(dst: DiskImage) -> int:
    """Granularity of zero detection: the target's block, so skipped zeros are whole free blocks."""
    return min(dst.block_size, CHUNK) if dst.block_size else MIN_HOLE


def copy_ranges(
    src: DiskImage,
    dst: DiskImage,
    ranges: Sequence[Range],
    *,
    dst_reads_zero: bool,
    progress: Progress | None = None,
) -> None:
    """Copy the bytes ``src`` shows in ``ranges`` to the same offsets of ``dst``.

    With ``dst_reads_zero`` (a fresh target without parent) zero pieces are skipped, which keeps
    the target sparse; otherwise they are written as zeros (``write_zeroes``), since the target
    may hold older data there.
    """
    report = or_ignore(progress)
    total = sum(n for _, n in ranges)
    grain = _grain(dst)
    pieces = [p for off, n in ranges for p in split_aligned(off, n, CHUNK)]
    done = 0
    report(done, total)
    with closing(prefetch(src.read, pieces)) as chunks:
        for off, data in chunks:
            if dst_reads_zero:
                for run_off, run_len in nonzero_runs(data, off, grain):
                    rel = run_off - off
                    dst.write(run_off, data if run_len == len(data) else data[rel : rel + run_len])
            elif is_zero(data):
                dst.write_zeroes(off, len(data))
            else:
                dst.write(off, data)
            done += len(data)
            report(done, total)
