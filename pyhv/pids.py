"""Whether a process id is in use, without psutil: the worker and the disk tools ask this
and import nothing more for it."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """Signal 0 checks without signalling; a process of another user exists too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
