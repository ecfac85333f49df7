"""Chains across formats, and hostile metadata in VHD files (property-based)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.errors import PyhvError
from pyhv.storage import CreateSpec, ImageFormat, create_image, open_image
from pyhv.units import MiB


def test_vhdx_child_of_vhd_parent(tmp_path: Path) -> None:
    pytest.importorskip("pyhv.storage.vhdx")
    parent = tmp_path / "p.vhd"
    create_image(parent, CreateSpec(size=8 * MiB))
    with open_image(parent, writable=True) as img:
        img.write(0, b"P" * (8 * MiB))
    before = parent.read_bytes()
    child = tmp_path / "c.avhdx"
    create_image(child, CreateSpec(size=0, parent=str(parent)))
    with open_image(child, writable=True) as img:
        img.write(4096, b"C" * 4096)
    with open_image(child) as img:
        assert [i.format for i in img.chain()] == [ImageFormat.VHDX, ImageFormat.VHD]
        assert img.read(0, 3 * 4096) == b"P" * 4096 + b"C" * 4096 + b"P" * 4096
    assert parent.read_bytes() == before


def _sample_image(folder: Path) -> tuple[bytes, bytes]:
    """A small differencing VHD over a dynamic one: file bytes of both."""
    rnd = random.Random(5)
    base, child = folder / "base.vhd", folder / "child.avhd"
    create_image(base, CreateSpec(size=MiB, block_size=256 * 1024))
    with open_image(base, writable=True) as img:
        img.write(0, rnd.randbytes(300_000))
    create_image(child, CreateSpec(size=0, parent=str(base), block_size=256 * 1024))
    with open_image(child, writable=True) as img:
        img.write(200_000, rnd.randbytes(300_000))
    return base.read_bytes(), child.read_bytes()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    folder = tmp_path_factory.mktemp("sample")
    base, child = _sample_image(folder)
    return folder, base, child


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_metadata_reads_or_fails_cleanly(
    sample: tuple[Path, bytes, bytes], data: st.DataObject
) -> None:
    folder, base, child = sample
    target = data.draw(st.sampled_from(["base", "child"]))
    content = bytearray(base if target == "base" else child)
    # metadata: footer copy, header, BAT, locators (first 16 KiB) and the footer at the end
    spots = st.one_of(st.integers(0, 16383), st.integers(len(content) - 512, len(content) - 1))
    for pos, value in data.draw(
        st.lists(st.tuples(spots, st.integers(0, 255)), min_size=1, max_size=6)
    ):
        content[pos] = value
    if data.draw(st.booleans()):
        content = content[: data.draw(st.integers(0, len(content)))]
    work = folder / "work"
    work.mkdir(exist_ok=True)
    (work / "base.vhd").write_bytes(content if target == "base" else base)
    (work / "child.avhd").write_bytes(content if target == "child" else child)
    try:
        with open_image(work / "child.avhd") as img:
            n = min(img.size, 2 * MiB)  # a mutated size may be huge: sample both ends
            assert len(img.read(0, n)) == n
            assert len(img.read(img.size - n, n)) == n
            img.extents()
            img.info()
        with open_image(work / "child.avhd", writable=True) as img:
            pos = data.draw(st.integers(0, max(0, img.size - 5000)))
            img.write(pos, b"w" * 5000)
            assert img.read(pos, 5000) == b"w" * 5000
    except PyhvError as e:
        assert "\n" not in str(e)
