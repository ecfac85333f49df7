"""Random operation sequences against a plain bytearray model of the disk."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.errors import UsageError
from pyhv.storage.image import CreateSpec, DiskType
from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.units import MiB

SIZE = 6 * MiB
KINDS = ("write", "zeroes", "discard", "flush", "compact", "resize", "reopen")

op = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, SIZE - 1),
    st.integers(1, 3 * MiB),
    st.integers(1, 255),
)


def apply(img: VhdxImage, model: bytearray, kind: str, off: int, length: int, value: int) -> None:
    size = len(model)
    off %= size
    length = min(length, size - off)
    if kind == "write":
        img.write(off, bytes([value]) * length)
        model[off : off + length] = bytes([value]) * length
    elif kind == "zeroes":
        img.write_zeroes(off, length)
        model[off : off + length] = bytes(length)
    elif kind == "discard":
        # Whole blocks read zeros afterwards; partial ones keep their content.
        img.discard(off, length)
        first = -(-off // MiB) * MiB
        last = (off + length) // MiB * MiB
        if off + length == size:
            last = size
        if last > first:
            model[first:last] = bytes(last - first)
    elif kind == "flush":
        img.flush()
    elif kind == "compact":
        img.compact()


def run_model(tmp_path: Path, ops: list[tuple[str, int, int, int]], diff: bool) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis may replay an example
    base = folder / "base.vhdx"
    FORMAT.create(base, CreateSpec(size=SIZE, block_size=MiB), None)
    model = bytearray(SIZE)
    with VhdxImage(base, writable=True) as img:
        img.write(MiB // 2, b"\x99" * (2 * MiB))
    model[MiB // 2 : MiB // 2 + 2 * MiB] = b"\x99" * (2 * MiB)
    path = base
    if diff:
        path = folder / "child.avhdx"
        with VhdxImage(base, writable=False) as parent:
            spec = CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, block_size=MiB)
            FORMAT.create(path, spec, parent)

    def open_rw() -> VhdxImage:
        img = VhdxImage(path, writable=True)
        if diff:
            img.attach_parent(VhdxImage(base, writable=False))
        return img

    img = open_rw()
    try:
        for kind, off, length, value in ops:
            if kind == "reopen":
                img.close()
                img = open_rw()
            elif kind == "resize":
                if diff:
                    continue
                new = max(MiB, (off + length) // 512 * 512)
                try:
                    img.resize(new)
                except UsageError:
                    assert new < img.info().minimum_size
                    continue
                del model[new:]
                model.extend(bytes(new - len(model)))
            else:
                apply(img, model, kind, off, length, value)
            assert img.size == len(model)
        assert img.read(0, img.size) == model
    finally:
        img.close()
    assert FORMAT.check(path, repair=False) == []
    reopened = open_rw()
    try:
        assert reopened.read(0, reopened.size) == model
    finally:
        reopened.close()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(op, max_size=12), diff=st.booleans())
def test_operations_match_model(
    tmp_path: Path, ops: list[tuple[str, int, int, int]], diff: bool
) -> None:
    run_model(tmp_path, ops, diff)


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(op, max_size=25), diff=st.booleans())
def test_operations_match_model_long(
    tmp_path: Path, ops: list[tuple[str, int, int, int]], diff: bool
) -> None:
    run_model(tmp_path, ops, diff)
