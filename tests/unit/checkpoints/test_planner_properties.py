"""Random sequences of create / write / apply / remove on a model of layered disks: every
checkpoint keeps showing what it showed when taken, the current state changes only by writes
and applies, and every file pyhv made is either in the tree or gone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.checkpoints.planner import Plan, disk_paths
from pyhv.checkpoints.steps import CopyFile, CreateDiff, Delete, Merge, WriteConfig, WriteTree


@dataclass
class Layer:
    parent: str | None
    data: dict[int, int] = field(default_factory=dict)


class Disks:
    """Files as layers of blocks; a merge copies the child's blocks into the parent."""

    def __init__(self, bases: list[str]) -> None:
        self.files = {b: Layer(None) for b in bases}
        self.token = 0

    def view(self, path: str) -> dict[int, int]:
        layer = self.files[path]
        below = self.view(layer.parent) if layer.parent else {}
        return {**below, **layer.data}

    def write(self, path: str, block: int) -> None:
        self.token += 1
        self.files[path].data[block] = self.token

    def run(self, plan: Plan) -> None:
        for step in plan.steps:
            if isinstance(step, CreateDiff):
                assert step.path not in self.files
                self.files[step.path] = Layer(step.parent)
            elif isinstance(step, Merge):
                child = self.files.pop(step.child)
                assert child.parent == step.into
                assert not any(f.parent == step.child for f in self.files.values())
                self.files[step.into].data.update(child.data)
            elif isinstance(step, Delete):
                assert not any(f.parent == step.path for f in self.files.values())
                del self.files[step.path]
            else:
                assert isinstance(step, WriteTree | WriteConfig | CopyFile)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["write", "create", "apply", "remove", "subtree"]), st.integers(0, 9)
    ),
    max_size=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_checkpoints_keep_their_content_whatever_the_sequence(new_sim: Any, ops: Any) -> None:
    sim = new_sim()
    disks = Disks(list(disk_paths(sim.config).values()))
    taken: dict[str, dict[str, dict[int, int]]] = {}

    def current_views() -> dict[str, dict[int, int]]:
        return {k: disks.view(p) for k, p in disk_paths(sim.config).items()}

    for n, (op, arg) in enumerate(ops):
        names = sorted(c.name for c in sim.tree.checkpoints)
        before = current_views()
        if op == "write":
            for path in disk_paths(sim.config).values():
                disks.write(path, arg)
            continue
        if op == "create":
            disks.run(sim.create(f"c{n}"))
            taken[f"c{n}"] = before
            assert current_views() == before
        elif names and op == "apply":
            name = names[arg % len(names)]
            disks.run(sim.apply(name))
            assert current_views() == taken[name]
        elif names:
            name = names[arg % len(names)]
            disks.run(sim.remove(name, subtree=op == "subtree"))
            assert current_views() == before
        for c in sim.tree.checkpoints:
            assert {k: disks.view(p) for k, p in c.disks.items()} == taken[c.name], c.name
        owned = {p for p, layer in disks.files.items() if layer.parent is not None}
        assert owned <= set(sim.tree.images), "orphaned differencing disk"
        assert set(sim.tree.images) <= set(disks.files)
