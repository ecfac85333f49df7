"""Kill a process writing a differencing VHDX at random points: afterwards the chain checks
clean and every sector holds its old or its new content (sector bitmaps and BAT go through
the log). The dynamic-disk cases (write, resize, compact, merge) are in test_crash.py."""

from __future__ import annotations

import hashlib
import importlib.util
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyhv.storage.image import CreateSpec, DiskType
from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.units import MiB

pytestmark = [pytest.mark.slow, pytest.mark.integration]
WORKER = Path(__file__).with_name("vhdx_crash_worker.py")
_spec = importlib.util.spec_from_file_location("vhdx_crash_worker", WORKER)
assert _spec is not None and _spec.loader is not None
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)
KILLS = 12


def base_values(data: bytes) -> list[int]:
    return [struct.unpack_from("<Q", data, off)[0] for off in range(0, len(data), worker.SECTOR)]


def expected(seed: int, ops: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for op in range(ops):
        for first, count, value in worker.writes_for(seed, op):
            for s in range(first, first + count):
                out[s] = value
    return out


def in_flight(seed: int, op: int) -> dict[int, set[int]]:
    """Sector → every value operation ``op`` writes there (a kill may stop it midway)."""
    out: dict[int, set[int]] = {}
    for first, count, value in worker.writes_for(seed, op):
        for s in range(first, first + count):
            out.setdefault(s, set()).add(value)
    return out


def open_chain(base: Path, child: Path, writable: bool) -> VhdxImage:
    img = VhdxImage(child, writable=writable)
    img.attach_parent(VhdxImage(base, writable=False))
    return img


def test_kill_differencing_writer(tmp_path: Path) -> None:
    rng = random.Random(11)
    base = tmp_path / "base.vhdx"
    FORMAT.create(base, CreateSpec(size=8 * MiB, block_size=MiB), None)
    with VhdxImage(base, writable=True) as img:
        img.write(0, b"".join(worker.sector_pattern(1000 + s, s) for s in range(worker.SECTORS)))
    base_hash = hashlib.sha256(base.read_bytes()).hexdigest()
    for seed in range(KILLS):
        child, state = tmp_path / f"c{seed}.avhdx", tmp_path / f"state{seed}"
        with VhdxImage(base, writable=False) as parent:
            spec = CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, block_size=MiB)
            FORMAT.create(child, spec, parent)
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(base), str(child), str(state), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.8))
        proc.kill()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        done = len(state.read_text().split()) if state.exists() else 0
        old = expected(seed, done)
        flight = in_flight(seed, done)
        with open_chain(base, child, writable=False) as img:
            seen = base_values(img.read(0, img.size))
        bad = [
            s
            for s, v in enumerate(seen)
            if v != old.get(s, 1000 + s) and v not in flight.get(s, ())
        ]
        assert not bad, f"seed {seed}: sector {bad[0]} holds {seen[bad[0]]}"
        with open_chain(base, child, writable=True):
            pass  # the next user's writable open replays any pending log
        assert FORMAT.check(child, repair=False) == []
        with open_chain(base, child, writable=False) as img:
            assert base_values(img.read(0, img.size)) == seen
    assert hashlib.sha256(base.read_bytes()).hexdigest() == base_hash
