"""The interactive side of ``pyhv vm console``: raw terminal ↔ the worker's console stream."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys
import termios
import tty
from collections.abc import Iterator

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


def attach(sock: socket.socket, name: str) -> None:
    """Copy bytes both ways until Ctrl-] or the VM's console closes."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    print(f"connected to VM '{name}' console; Ctrl-] detaches", file=sys.stderr)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(stdin, selectors.EVENT_READ)
    with raw_terminal(stdin), contextlib.closing(sock):
        while True:
            for key, _ in sel.select():
                if key.fileobj is sock:
                    data = sock.recv(65536)
                    if not data:
                        print("\r\nconsole closed", file=sys.stderr)
                        return
                    os.write(stdout, data)
                else:
                    data = os.read(stdin, 1024)
                    if not data or DETACH in data:
                        print("\r\ndetached", file=sys.stderr)
                        return
                    sock.sendall(data)
