import os
from pathlib import Path

import pytest

from pyhv.errors import ConflictError
from pyhv.storage.operations.convert import partial_name, remove_stale_partials
from pyhv.storage.operations.files import publish, remove_quietly


def test_publish_renames_the_finished_file(tmp_path: Path) -> None:
    tmp, final = tmp_path / ".x.partial", tmp_path / "x"
    tmp.write_bytes(b"done")
    publish(tmp, final)
    assert final.read_bytes() == b"done" and not tmp.exists()


def test_publish_never_replaces_a_file_that_appeared(tmp_path: Path) -> None:
    tmp, final = tmp_path / ".x.partial", tmp_path / "x"
    tmp.write_bytes(b"new")
    final.write_bytes(b"someone else's")
    with pytest.raises(ConflictError, match="appeared"):
        publish(tmp, final)
    assert final.read_bytes() == b"someone else's"


def test_remove_quietly_ignores_missing_files(tmp_path: Path) -> None:
    remove_quietly(tmp_path / "nothing")


def test_stale_partials_of_dead_converts_are_removed(tmp_path: Path) -> None:
    dst = tmp_path / "disk[1].vhdx"
    dead = 2**31 - 2  # above any pid_max: no such process
    stale = partial_name(dst, dead)
    mine = partial_name(dst, os.getpid())
    other = partial_name(tmp_path / "other.vhdx", dead)
    for p in (stale, mine, other):
        p.write_bytes(b"x")
    remove_stale_partials(dst)
    assert not stale.exists()
    assert mine.exists() and other.exists()
