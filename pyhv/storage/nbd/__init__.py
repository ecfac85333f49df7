"""The storage provider: pyhv's NBD server, serving disk images to the VM's QEMU.

# Ref: NBD protocol, ``doc/proto.md`` of github.com/NetworkBlockDevice/nbd

Modules: :mod:`.protocol` (wire format, pure), :mod:`.handshake` (option negotiation, pure),
:mod:`.commands` (what each request does to an image), :mod:`.stats` (per-export counters),
:mod:`.export` (an export and its swap gate), :mod:`.connection` (one client),
:mod:`.server` (:class:`NbdServer`, the API the worker uses).
"""

from __future__ import annotations

from pyhv.storage.nbd.protocol import NbdProtocolError
from pyhv.storage.nbd.server import NbdServer
from pyhv.storage.nbd.stats import ExportStats

__all__ = ["ExportStats", "NbdProtocolError", "NbdServer"]
