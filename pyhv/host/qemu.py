"""Which QEMU binary pyhv runs (``PYHV_QEMU`` overrides the search) and its version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

QEMU_NAME = "qemu-system-x86_64"
_VERSION_RE = re.compile(r"QEMU emulator version (\d+\.\d+(?:\.\d+)?)")


def find_qemu() -> str | None:
    """Absolute path of the QEMU binary, or None when it is not installed."""
    return shutil.which(os.environ.get("PYHV_QEMU") or QEMU_NAME)


def parse_qemu_version(text: str) -> str | None:
    m = _VERSION_RE.search(text)
    return m.group(1) if m else None


def qemu_version(binary: str) -> str | None:
    try:
        done = subprocess.run(
            [binary, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_qemu_version(done.stdout)
