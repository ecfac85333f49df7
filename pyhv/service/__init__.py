"""pyhvd, the management service: the one place that decides what happens to VMs."""

from pathlib import Path

from pyhv.paths import HomePaths

SOCKET_NAME = "pyhvd.sock"


def default_socket(paths: HomePaths | None = None) -> Path:
    """Where pyhvd listens unless told otherwise: ``PYHV_HOME/run/pyhvd.sock``."""
    return (paths or HomePaths()).run_root / SOCKET_NAME


__all__ = ["SOCKET_NAME", "default_socket"]
