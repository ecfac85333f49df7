"""The interactive side of ``pyhv vm console``: raw terminal ↔ the console websocket of pyhvd."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Iterator

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

DETACH = b"\x1d"  # Ctrl-]


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


POLL_S = 0.2  # how soon a closed console is noticed while the keyboard is idle


def attach(conn: ClientConnection, name: str) -> None:
    """Copy bytes both ways until Ctrl-] or the VM's console closes; the caller closes ``conn``."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    print(f"connected to VM '{name}' console; Ctrl-] detaches", file=sys.stderr)
    output = threading.Thread(target=_copy_out, args=(conn, stdout), daemon=True)
    with raw_terminal(stdin):
        output.start()
        while output.is_alive():
            ready, _, _ = select.select([stdin], [], [], POLL_S)
            if not ready:
                continue
            data = os.read(stdin, 1024)
            if not data or DETACH in data:
                print("\r\ndetached", file=sys.stderr)
                return
            try:
                conn.send(data)
            except ConnectionClosed:
                break
        print("\r\nconsole closed", file=sys.stderr)


def _copy_out(conn: ClientConnection, stdout: int) -> None:
    with contextlib.suppress(ConnectionClosed):
        for message in conn:
            os.write(stdout, message if isinstance(message, bytes) else message.encode())
