"""Cross-process locks on image files: a disk a running VM uses is neither attached to a second
VM nor changed by ``pyhv vhd`` tools, whichever process asks.

Writable opens take an exclusive ``flock``, read-only opens (every parent of a chain included) a
shared one, for as long as the image is open; the kernel drops them when the holder dies, so a
``kill -9`` never leaves a stale lock (a holder still dying is waited for, briefly).

``flock`` locks belong to an open file description, so two opens of one file in one process
would refuse each other; but one process is one user of a file (a merge reads the child and
writes its parent; a worker may read a disk it serves), so the locks are counted per process:
one locked descriptor per file, upgraded and downgraded.

A refused lock names its holder: the pid comes from ``/proc/locks``, the name from the holder's
``PYHV_DISK_HOLDER`` environment variable (the worker launcher sets ``VM 'web1'``) or, for a
process forked without an exec (a worker of the fork server, whose ``/proc`` environment is
the server's), from ``PYHV_DISK_HOLDER=…`` at the end of its process title.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pyhv.errors import ConflictError
from pyhv.storage.fileio import os_errors

HOLDER_ENV = "PYHV_DISK_HOLDER"
EXITING_WAIT_S = 10.0
PROC_LOCKS = Path("/proc/locks")

log = logging.getLogger(__name__)

FileKey = tuple[int, int]  # (st_dev, st_ino)


@dataclass
class _Held:
    fd: int
    shared: int = 0
    exclusive: int = 0


_table: dict[FileKey, _Held] = {}
_mutex = threading.Lock()


class FileLock:
    """One open image's share of its file's lock; ``release`` is idempotent."""

    def __init__(self, key: FileKey, exclusive: bool) -> None:
        self.key = key
        self.exclusive = exclusive
        self._released = False

    def release(self) -> None:
        with _mutex:
            if self._released:
                return
            self._released = True
            held = _table[self.key]
            if self.exclusive:
                held.exclusive -= 1
            else:
                held.shared -= 1
            if held.shared == 0 and held.exclusive == 0:
                os.close(held.fd)  # drops the lock
                del _table[self.key]
            elif held.exclusive == 0 and self.exclusive:
                fcntl.flock(held.fd, fcntl.LOCK_SH)  # we held it exclusively: cannot block


def lock_image(path: Path, exclusive: bool) -> FileLock:
    """Take this process's share of the lock on ``path``.

    :raises ConflictError: another process holds a conflicting lock; names the holder.
    """
    with os_errors(path, "lock"):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _mutex:
        held = _table.get(key)
        if held is None:
            try:
                _flock(fd, exclusive, path, key)
            except BaseException:
                os.close(fd)
                raise
            held = _table[key] = _Held(fd)
        else:
            os.close(fd)
            if exclusive and held.exclusive == 0:
                _upgrade(held, path, key)
        if exclusive:
            held.exclusive += 1
        else:
            held.shared += 1
    return FileLock(key, exclusive)


def _upgrade(held: _Held, path: Path, key: FileKey) -> None:
    """Shared → exclusive. Linux drops the shared lock before trying, so take it back on refusal."""
    try:
        _flock(held.fd, True, path, key)
    except ConflictError:
        try:
            fcntl.flock(held.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            log.warning("%s: lost the shared lock while trying to write it", path)
        raise


def _flock(fd: int, exclusive: bool, path: Path, key: FileKey) -> None:
    """Lock without blocking; only a holder that is dying (a killed worker whose I/O threads
    still finish a write) is waited for, so a VM restarted after a crash finds its disks free."""
    deadline = time.monotonic() + EXITING_WAIT_S
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            # No visible holder: one whose pid is already released while it exits.
            pids = _holders(key)
            if not all(map(_exiting, pids)) or time.monotonic() > deadline:
                raise ConflictError(f"disk {path} is in use by {describe_holder(pids)}") from None
            time.sleep(0.05)


def _holders(key: FileKey) -> list[int]:
    try:
        return holder_pids(PROC_LOCKS.read_text(), key, exclude=os.getpid())
    except OSError:
        return []


def _exiting(pid: int) -> bool:
    """A zombie leader: the process was killed and its last threads are finishing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone already
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def describe_holder(pids: list[int]) -> str:
    """``VM 'web1' (pid 42)``, ``process 42 (pyhv)`` or ``another process``."""
    if not pids:
        return "another process"
    pid = pids[0]
    name = _environ_value(pid, HOLDER_ENV) or _title_value(pid, HOLDER_ENV)
    if name:
        return f"{name} (pid {pid})"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return f"process {pid}"
    return f"process {pid} ({comm})"


def holder_pids(proc_locks: str, key: FileKey, *, exclude: int | None = None) -> list[int]:
    """Pids holding a flock on the file ``key`` according to ``/proc/locks`` text (waiters,
    shown with ``->``, hold nothing)."""
    dev, ino = key
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    pids: list[int] = []
    for line in proc_locks.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        pid_text, file_id = fields[4], fields[5]
        if file_id != want or not pid_text.lstrip("-").isdigit():
            continue
        pid = int(pid_text)
        if pid > 0 and pid != exclude and pid not in pids:
            pids.append(pid)
    return pids


def holder_title(title: str, holder: str | None) -> str:
    """``title`` naming ``holder`` for :func:`describe_holder`, for a process whose environment
    in ``/proc`` is not its own."""
    return f"{title} {HOLDER_ENV}={holder}" if holder else title


def _title_value(pid: int, name: str) -> str | None:
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return None
    _, _, value = title.decode(errors="replace").partition(f" {name}=")
    return value or None


def _environ_value(pid: int, name: str) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None
