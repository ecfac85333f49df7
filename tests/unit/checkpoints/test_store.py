from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyhv.checkpoints.journal import Journal, clear_journal, load_journal, save_journal
from pyhv.checkpoints.store import load_tree, save_tree
from pyhv.checkpoints.tree import CheckpointTree
from pyhv.errors import ConfigError


def test_tree_round_trips_and_is_empty_when_missing(tmp_path: Path, branched: Any) -> None:
    path = tmp_path / "checkpoints" / "tree.json"
    assert load_tree(path) == CheckpointTree()
    save_tree(path, branched.tree)
    assert load_tree(path) == branched.tree


def test_damaged_tree_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"tree.json: damaged checkpoint tree") as err:
        load_tree(path)
    assert "\n" not in str(err.value)


def test_journal_round_trips_with_its_progress(tmp_path: Path, sim: Any) -> None:
    path = tmp_path / "journal.json"
    assert load_journal(path) is None
    journal = Journal.of(sim.create("c1")).advanced()
    save_journal(path, journal)
    loaded = load_journal(path)
    assert loaded == journal and loaded is not None and loaded.done == 1
    assert loaded.vm_config() == sim.config
    clear_journal(path)
    assert load_journal(path) is None


def test_unreadable_journal_is_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    path.write_text('{"op": "create"}')
    with pytest.raises(ConfigError, match="remove it by hand"):
        load_journal(path)
