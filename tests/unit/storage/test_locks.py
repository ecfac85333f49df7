"""Image file locks: shared for readers and parents, exclusive for writers, across processes;
one process never locks itself out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pyhv.errors import ConflictError
from pyhv.storage import CreateSpec, create_image, locks, open_image
from pyhv.storage.locks import HOLDER_ENV, holder_pids, lock_image
from pyhv.units import MiB

HOLD = """
import sys
from pyhv.storage import open_image
image = open_image(sys.argv[1], writable=sys.argv[2] == "w")
print("held", flush=True)
sys.stdin.read()
"""


HOLD_TITLED = (
    """
import sys
from setproctitle import setproctitle
from pyhv.storage.locks import holder_title
setproctitle(holder_title("pyhv-worker --home /h 1d7", sys.argv[3]))
"""
    + HOLD
)


@contextmanager
def held_elsewhere(
    path: Path, mode: str, holder: str | None = None, *, titled: bool = False
) -> Iterator[int]:
    """Another process holding ``path`` open (``w`` writable, ``r`` read-only), named by its
    environment, or with ``titled`` by its process title only."""
    env = {k: v for k, v in os.environ.items() if k != HOLDER_ENV}
    if holder and not titled:
        env[HOLDER_ENV] = holder
    script = HOLD_TITLED if titled else HOLD
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path), mode, holder or ""],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc.pid
    finally:
        proc.communicate("")


TRY = """
import sys
from pyhv.errors import PyhvError
from pyhv.storage import open_image
try:
    open_image(sys.argv[1], writable=sys.argv[2] == "w").close()
    print("ok")
except PyhvError as e:
    print(e)
"""


def attempt(path: Path, mode: str) -> str:
    """What another process gets when it opens ``path``: ``ok`` or the error line."""
    run = subprocess.run([sys.executable, "-c", TRY, str(path), mode], capture_output=True)
    return run.stdout.decode().strip()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "d.vhdx"
    create_image(path, CreateSpec(size=4 * MiB))
    return path


def test_proc_locks_parsing() -> None:
    text = (
        "1: FLOCK  ADVISORY  WRITE 4242 fe:00:123 0 EOF\n"
        "1: -> FLOCK  ADVISORY  WRITE 7 fe:00:123 0 EOF\n"
        "2: POSIX  ADVISORY  READ 99 fe:00:123 0 EOF\n"
        "3: FLOCK  ADVISORY  READ 5 fe:00:124 0 EOF\n"
        "4: FLOCK  ADVISORY  READ -1 fe:00:123 0 EOF\n"
    )
    dev = os.makedev(0xFE, 0)
    assert holder_pids(text, (dev, 123)) == [4242]
    assert holder_pids(text, (dev, 123), exclude=4242) == []


def test_a_writer_elsewhere_is_named(disk: Path) -> None:
    with held_elsewhere(disk, "w", "VM 'web1'") as pid:
        for writable in (False, True):
            with pytest.raises(ConflictError) as err:
                open_image(disk, writable)
            assert str(err.value) == f"disk {disk} is in use by VM 'web1' (pid {pid})"
        with open_image(disk, lock=False) as image:  # inspecting takes no lock
            assert image.size == 4 * MiB
    with open_image(disk, writable=True):
        pass


def test_a_forked_worker_is_named_by_its_title(disk: Path) -> None:
    """A fork server's worker has the server's environment in /proc, its own title."""
    with held_elsewhere(disk, "w", "VM 'web 2'", titled=True) as pid:
        assert attempt(disk, "r") == f"disk {disk} is in use by VM 'web 2' (pid {pid})"


def test_readers_share_but_keep_writers_out(disk: Path) -> None:
    with held_elsewhere(disk, "r") as pid:
        with open_image(disk) as image:
            assert image.size == 4 * MiB
        with pytest.raises(ConflictError, match=f"in use by process {pid} \\(python"):
            open_image(disk, writable=True)


def test_parents_are_locked_shared(disk: Path, tmp_path: Path) -> None:
    child = tmp_path / "c.avhdx"
    create_image(child, CreateSpec(size=0, parent=str(disk)))
    with held_elsewhere(child, "w"):
        with pytest.raises(ConflictError, match=r"d\.vhdx is in use"):
            open_image(disk, writable=True)
        with open_image(disk):
            pass


def test_one_process_never_locks_itself_out(disk: Path) -> None:
    with open_image(disk) as reader, open_image(disk, writable=True) as writer:
        writer.write(0, b"x" * 512)
        assert reader.size == writer.size
        assert "is in use" in attempt(disk, "r")
    assert attempt(disk, "r") == "ok"
    assert attempt(disk, "w") == "ok"


def test_a_refused_upgrade_keeps_the_shared_lock(disk: Path) -> None:
    first = lock_image(disk, exclusive=False)
    try:
        with held_elsewhere(disk, "r"), pytest.raises(ConflictError):
            lock_image(disk, exclusive=True)
        assert "is in use by process" in attempt(disk, "w")
        assert attempt(disk, "r") == "ok"
    finally:
        first.release()
    first.release()  # idempotent


def test_an_image_dropped_without_close_releases_its_lock(disk: Path) -> None:
    open_image(disk, writable=True).read(0, 512)  # never closed: garbage
    assert attempt(disk, "w") == "ok"


def test_a_dying_holder_is_told_apart_from_a_live_one() -> None:
    assert not locks._exiting(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while not locks._exiting(child.pid):  # a zombie until reaped
        time.sleep(0.01)
    child.wait()
    assert locks._exiting(child.pid)  # gone
