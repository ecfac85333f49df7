from __future__ import annotations

from pyhv.checkpoints.collect import collect, detached
from pyhv.checkpoints.steps import Delete, Merge


def test_unreferenced_leaf_pyhv_made_is_deleted_and_its_unused_parents_follow() -> None:
    images = {"/base": None, "/a": "/base", "/b": "/a", "/cur": "/base"}
    done = collect(images, {"/base", "/cur"})
    assert done.steps == [Delete(path="/b"), Delete(path="/a")]
    assert done.images == {"/base": None, "/cur": "/base"}


def test_a_disk_pyhv_did_not_make_is_never_deleted() -> None:
    done = collect({"/base": None}, set())
    assert done.steps == [] and done.images == {}


def test_single_leaf_reader_is_merged_into_its_unreferenced_parent() -> None:
    images = {"/base": None, "/a": "/base", "/cur": "/a"}
    done = collect(images, {"/base", "/cur"})
    assert done.steps == [Merge(child="/cur", into="/a")]
    assert done.moved == {"/cur": "/a"}
    assert done.images == {"/base": None, "/a": "/base"}


def test_merges_cascade_and_moved_names_the_final_heir() -> None:
    images = {"/base": None, "/a": "/base", "/cur": "/a"}
    done = collect(images, {"/cur"})
    assert done.steps == [Merge(child="/cur", into="/a"), Merge(child="/a", into="/base")]
    assert done.moved == {"/cur": "/base", "/a": "/base"}
    assert done.images == {"/base": None}


def test_shared_parent_of_several_readers_stays() -> None:
    images = {"/base": None, "/a": "/base", "/x": "/a", "/y": "/a"}
    done = collect(images, {"/base", "/x", "/y"})
    assert done.steps == [] and done.images == images


def test_parent_whose_single_reader_has_readers_waits() -> None:
    images = {"/base": None, "/a": "/base", "/b": "/a", "/cur": "/b"}
    done = collect(images, {"/base", "/b", "/cur"})
    assert done.steps == [] and done.images == images


def test_detached_are_the_unreferenced_leaves_only() -> None:
    images = {"/base": None, "/shared": "/base", "/x": "/shared", "/gone": "/shared"}
    assert detached(images, {"/base", "/x"}) == {"/gone"}


def test_a_kept_image_is_never_merged_into_its_parent() -> None:
    images = {"/base": None, "/a": "/base", "/gone": "/a"}
    done = collect(images, {"/gone"}, kept=frozenset({"/gone"}))
    assert done.steps == [] and done.images == images
