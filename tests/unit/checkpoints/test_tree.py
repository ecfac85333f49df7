from __future__ import annotations

from typing import Any

import pytest

from pyhv.checkpoints.tree import CheckpointTree, draw
from pyhv.errors import ConflictError, NotFoundError, UsageError


def test_draw_marks_now_under_the_current_checkpoint(branched: Any) -> None:
    assert draw(branched.tree) == ["c1", "├── c2", "└── c3", "    └── Now"]


def test_draw_of_an_empty_tree_is_just_now() -> None:
    assert draw(CheckpointTree()) == ["Now"]


def test_find_by_name_or_id_and_a_clear_error_naming_the_checkpoints(branched: Any) -> None:
    tree = branched.tree
    c2 = tree.find("c2", "vm1")
    assert tree.find(c2.id, "vm1") == c2
    with pytest.raises(NotFoundError, match=r"no checkpoint named 'c9' \(its checkpoints: 'c1'"):
        tree.find("c9", "vm1")


def test_rename_keeps_names_unique(branched: Any) -> None:
    tree = branched.tree
    c2 = tree.find("c2", "vm1")
    assert tree.renamed(c2.id, "before upgrade").find("before upgrade", "vm1").id == c2.id
    with pytest.raises(ConflictError, match="'c3' exists"):
        tree.renamed(c2.id, "c3")
    with pytest.raises(UsageError, match="empty"):
        tree.renamed(c2.id, "  ")
    with pytest.raises(UsageError, match="control characters"):
        tree.renamed(c2.id, "a\nb")


def test_creating_a_taken_name_is_refused(sim: Any) -> None:
    sim.create("c1")
    with pytest.raises(ConflictError):
        sim.create("c1")


def test_without_moves_children_up_and_current_to_the_parent(branched: Any) -> None:
    tree = branched.tree
    c1, c3 = tree.find("c1", "vm1"), tree.find("c3", "vm1")
    after = tree.without(c1.id, subtree=False)
    assert {c.name: c.parent for c in after.checkpoints} == {"c2": None, "c3": None}
    assert after.current == c3.id
    gone = tree.without(c1.id, subtree=True)
    assert gone.checkpoints == () and gone.current is None


def test_subtree_lists_parents_before_children(branched: Any) -> None:
    tree = branched.tree
    names = [c.name for c in tree.subtree(tree.find("c1", "vm1").id)]
    assert names[0] == "c1" and sorted(names[1:]) == ["c2", "c3"]


def test_round_trips_through_json(branched: Any) -> None:
    tree = branched.tree
    assert CheckpointTree.model_validate_json(tree.model_dump_json()) == tree


def test_an_id_wins_over_an_older_checkpoint_named_like_it(branched: Any) -> None:
    """The CLI resolves a name and sends the id: ``remove c3`` once removed c1, which an
    earlier rename had named like c3's id."""
    tree = branched.tree
    c1, c3 = tree.find("c1", "vm1"), tree.find("c3", "vm1")
    clash = tree.replaced(c1.model_copy(update={"name": c3.id}))  # as trees made before hold
    assert clash.find(c3.id, "vm1").id == c3.id


def test_a_name_that_is_another_checkpoints_id_is_refused(sim: Any) -> None:
    sim.create("c1")
    c1 = sim.tree.find("c1", "vm1")
    with pytest.raises(ConflictError, match="with the id"):
        sim.create(c1.id)
    sim.create("c2")
    with pytest.raises(ConflictError, match="with the id"):
        sim.tree.renamed(sim.tree.find("c2", "vm1").id, c1.id)
