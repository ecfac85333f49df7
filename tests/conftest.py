"""Fixtures every test folder may use."""

from __future__ import annotations

from pathlib import Path

import pytest

# CI lays shared/ beside the clone; a developer's checkout has it beside main/ as well.
SHARED_TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def vhd_testdata() -> Path:
    """Real VHD files written by other tools (see shared/testdata/vhd/README.md)."""
    path = SHARED_TESTDATA / "vhd"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path
