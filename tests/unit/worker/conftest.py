"""Fixtures of the worker's unit tests: a PYHV_HOME short enough for unix sockets."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyhv.paths import HomePaths

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path: the fake
# QEMU of test_worker_lifecycle serves other worker tests too.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A PYHV_HOME short enough for unix socket paths (tmp_path is too long)."""
    home = Path(tempfile.mkdtemp(prefix="pyhv", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def paths(short_home: Path) -> HomePaths:
    return HomePaths(short_home, run_root=short_home / "run")
