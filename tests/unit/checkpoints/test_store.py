from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyhv.checkpoints.export import export_checkpoint
from pyhv.checkpoints.journal import Journal, clear_journal, load_journal, save_journal
from pyhv.checkpoints.store import check_memory, load_tree, save_tree
from pyhv.checkpoints.tree import CheckpointTree
from pyhv.errors import ConfigError, StateError


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


def test_a_checkpoint_whose_memory_file_is_gone_is_refused_up_front(
    tmp_path: Path, sim: Any
) -> None:
    """An apply of it stopped the VM and then failed at every recovery, so every checkpoint
    command of the VM failed ("internal error (FileNotFoundError)") until the file came back."""
    sim.create("c1")
    memory = tmp_path / "C1.vmrs"
    node = sim.tree.find("c1", "vm1").model_copy(update={"memory_state": str(memory)})
    with pytest.raises(StateError, match=r"^checkpoint 'c1' lost its memory file .*C1.vmrs"):
        check_memory(node)
    with pytest.raises(StateError, match="lost its memory file"):
        export_checkpoint(node, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    memory.write_bytes(b"state")
    check_memory(node)
    check_memory(sim.tree.find("c1", "vm1"))  # disks only: nothing to miss
