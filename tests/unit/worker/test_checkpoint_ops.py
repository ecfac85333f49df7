"""Requests of the worker's checkpoint ops, parsed before anything happens."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import UsageError
from pyhv.worker.checkpoint_ops import parse_swap_args
from pyhv.worker.memory_save import partial_path


def test_swap_request_is_keyed_by_controller_and_slot() -> None:
    args = {"disks": {"0:1": "/d/a.avhdx"}, "memory_path": "/m/x.vmrs", "freeze": False}
    assert parse_swap_args(args) == ({(0, 1): Path("/d/a.avhdx")}, Path("/m/x.vmrs"), False)
    assert parse_swap_args({"disks": {}, "freeze": True}) == ({}, None, True)
    with pytest.raises(UsageError, match="controller:slot"):
        parse_swap_args({"disks": {"scsi0-1": "/d/a.avhdx"}})
    with pytest.raises(UsageError):
        parse_swap_args({})


def test_memory_is_written_under_a_temporary_name() -> None:
    assert partial_path(Path("/m/x.vmrs")) == Path("/m/x.vmrs.partial")
