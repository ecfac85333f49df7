"""Crash safety: kill a process that changes an image at random points, then look at the image.

After every kill, ``check_chain`` must find nothing wrong and every sector must hold either its
content before the interrupted operation or the content that operation was writing: nothing
older, nothing torn, nothing from elsewhere. Operations recorded as done must be fully there.
"""

from __future__ import annotations

import importlib.util
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyhv.errors import ParentError
from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.operations import check_chain, merge_image

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ITERATIONS = 10  # per format and operation: 20 kills per operation
WORKER = Path(__file__).with_name("crash_worker.py")
_spec = importlib.util.spec_from_file_location("crash_worker", WORKER)
assert _spec is not None and _spec.loader is not None
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)  # shared with the helper: what operation i writes
SECTOR = worker.SECTOR


def records(state: Path) -> list[tuple[str, int]]:
    if not state.exists():
        return []
    return [(kind, int(n)) for kind, n in (line.split() for line in state.read_text().splitlines())]


def committed(op: str, seed: int, count: int) -> dict[int, int]:
    """Sector → value once operations ``0..count-1`` are complete (unlisted sectors are 0)."""
    out: dict[int, int] = {}
    for i in range(count):
        for first, n, value in worker.writes_for(op, seed, i):
            for s in range(first, first + n):
                out[s] = value
    return out


def sector_values(data: bytes) -> list[int]:
    """Decode each sector back to the value that wrote it; -1 for content no write produced."""
    out = []
    for off in range(0, len(data), SECTOR):
        sector = data[off : off + SECTOR]
        value, where = struct.unpack_from("<QQ", sector)
        if sector == worker.sector_pattern(0, 0):
            out.append(0)
        elif where == off // SECTOR and sector == worker.sector_pattern(value, where):
            out.append(value)
        else:
            out.append(-1)
    return out


def read_values(path: Path, sizes: set[int]) -> list[int]:
    with open_image(path) as img:
        assert img.size in sizes
        return sector_values(img.read(0, img.size))


def assert_exactly(values: list[int], expected: dict[int, int], what: str) -> None:
    bad = [s for s, v in enumerate(values) if v != expected.get(s, 0)]
    assert not bad, f"{what}: {len(bad)} sectors differ, first {bad[0]}: {values[bad[0]]}"


def in_flight(op: str, seed: int, i: int) -> dict[int, set[int]]:
    """Sector → every value operation ``i`` writes there (its writes may overlap)."""
    out: dict[int, set[int]] = {}
    for first, n, value in worker.writes_for(op, seed, i):
        for s in range(first, first + n):
            out.setdefault(s, set()).add(value)
    return out


def assert_old_or_new(values: list[int], old: dict[int, int], new: dict[int, set[int]]) -> None:
    bad = [s for s, v in enumerate(values) if v != old.get(s, 0) and v not in new.get(s, ())]
    assert not bad, f"{len(bad)} sectors neither old nor new, first {bad[0]}: {values[bad[0]]}"


def reopen(path: Path) -> None:
    """What the next user of the disk does first: a writable open (which replays a VHDX log)."""
    with open_image(path, writable=True):
        pass


def verify(op: str, image: Path, state: Path, seed: int) -> None:
    recs = records(state)
    done = sum(1 for kind, _ in recs if kind == "done")
    old = committed(op, seed, done)
    if op == "merge":
        verify_merge(image, recs, old, committed(op, seed, done + 1), in_flight(op, seed, done))
        return
    sizes = {worker.disk_size(op, done), worker.disk_size(op, done + 1)}
    seen = read_values(image, sizes)
    assert_old_or_new(seen, old, in_flight(op, seed, done))
    reopen(image)
    assert check_chain(image) == []
    assert read_values(image, sizes) == seen


def verify_merge(
    base: Path,
    recs: list[tuple[str, int]],
    old: dict[int, int],
    new: dict[int, int],
    flight: dict[int, set[int]],
) -> None:
    child = worker.child_path(base)
    sizes = {worker.BASE_SIZE}
    if not recs or recs[-1][0] == "done":  # the next child was at most being written
        assert_exactly(read_values(base, sizes), old, "base")
        reopen(base)
        assert check_chain(base) == []
        return
    # killed during a merge: the base may hold a mix, the child chain must still read right
    assert_old_or_new(read_values(base, sizes), old, flight)
    if child.exists():
        # the link holds although the base changed (VHDX: merge keeps its DataWriteGuid)
        try:
            values = read_values(child, sizes)
        except ParentError as e:
            pytest.fail(f"child chain unreadable after a crash mid-merge: {e}")
        assert_exactly(values, new, "child chain")
        reopen(base)
        assert check_chain(child) == []
        assert_exactly(read_values(child, sizes), new, "child chain")
        merge_image(child)  # running the merge again finishes it
        assert not child.exists()
        assert_exactly(read_values(base, sizes), new, "base after the merge was resumed")
    else:
        assert_exactly(read_values(base, sizes), new, "base after the child was removed")
        reopen(base)
        assert check_chain(base) == []


@pytest.mark.parametrize("fmt", ["vhd", "vhdx"])
@pytest.mark.parametrize("op", ["write", "resize", "compact", "merge"])
def test_kill_at_random_points(tmp_path: Path, fmt: str, op: str) -> None:
    rng = random.Random(f"{fmt}-{op}")
    for seed in range(ITERATIONS):
        folder = tmp_path / str(seed)
        folder.mkdir()
        image, state = folder / f"disk.{fmt}", folder / "state"
        create_image(
            image, CreateSpec(size=worker.BASE_SIZE, disk_type=DiskType.DYNAMIC, block_size=1 << 20)
        )
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), op, str(image), str(state), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        verify(op, image, state, seed)


def test_killed_convert_never_leaves_a_partial_target(tmp_path: Path) -> None:
    """The target name appears only complete: after a kill it is absent or whole."""
    rng = random.Random("convert")
    src = tmp_path / "src.img"
    with src.open("wb") as f:
        for _ in range(48):
            f.write(rng.randbytes(1 << 20))
    with open_image(src) as img:
        expected = img.read(0, img.size)
    for i in range(ITERATIONS):
        dst = tmp_path / f"out{i}.vhdx"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyhv.cli", "vhd", "convert", str(src), str(dst)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # aim at the copy: wait for the temporary file, then kill a little later
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if any(tmp_path.glob(f".out{i}.*")):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()
        if dst.exists():
            assert check_chain(dst) == []
            with open_image(dst) as img:
                assert img.read(0, img.size) == expected
