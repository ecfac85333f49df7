"""Convert the same disks with pyhv and with qemu-img in one run and print the time ratios.

Inputs (built once in a temporary folder): a 512 MiB dynamic VHDX half filled with random data
(every other 16 MiB), and the same content as a raw file. Cases: VHDX → raw, raw → dynamic
VHDX, raw → fixed VHD. Each tool converts each case ``ROUNDS`` times; the best time counts.
pyhv is timed as users run it (``pyhv vhd convert``, a fresh Python process) and as a library
call. Goal: pyhv / qemu-img ≤ 1.0.

pyhv makes the new disk durable (fsync) before giving it its name; ``qemu-img convert`` does
not flush at all (checked with strace: no fdatasync after the data writes), so it is timed
twice: as it runs, and followed by an fsync of its output ("qemu+sync"), the like-for-like
figure the ratios use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pyhv.storage import DiskType
from pyhv.storage.operations import convert_image

MiB = 1 << 20
SIZE = 512 * MiB
ROUNDS = 3

CASES = [
    # (name, source, target name, qemu-img output options, pyhv convert options)
    ("vhdx dynamic -> raw", "src.vhdx", "out.img", ["-O", "raw"], []),
    (
        "raw -> vhdx dynamic",
        "src.img",
        "out.vhdx",
        ["-O", "vhdx", "-o", "subformat=dynamic"],
        ["--dynamic"],
    ),
    (
        "raw -> vhd fixed",
        "src.img",
        "out.vhd",
        ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
        ["--fixed"],
    ),
]


def make_inputs(folder: Path) -> None:
    raw = folder / "src.img"
    with raw.open("wb") as f:
        f.truncate(SIZE)
        for off in range(0, SIZE, 32 * MiB):
            f.seek(off)
            f.write(os.urandom(16 * MiB))
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "vhdx",
            "-o",
            "subformat=dynamic",
            str(raw),
            str(folder / "src.vhdx"),
        ],
        check=True,
    )


def best_of(run: Callable[[], object], target: Path) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        target.unlink(missing_ok=True)
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    target.unlink(missing_ok=True)
    return best


def qemu_durable(cmd: list[str], dst: Path) -> None:
    """qemu-img, then what pyhv does before it returns: the output flushed to disk."""
    subprocess.run(cmd, check=True)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def measure(src: Path, dst: Path, qemu_opts: list[str], pyhv_opts: list[str]) -> list[float]:
    """Best times of qemu-img (as is, then with sync), the pyhv CLI and the pyhv library."""
    src_fmt = "vhdx" if src.suffix == ".vhdx" else "raw"
    qemu = ["qemu-img", "convert", "-f", src_fmt, *qemu_opts, str(src), str(dst)]
    cli = [sys.executable, "-m", "pyhv.cli", "vhd", "convert", str(src), str(dst), *pyhv_opts]
    disk_type = DiskType(pyhv_opts[0].lstrip("-")) if pyhv_opts else None
    return [
        best_of(partial(subprocess.run, qemu, check=True), dst),
        best_of(partial(qemu_durable, qemu, dst), dst),
        best_of(partial(subprocess.run, cli, check=True, stdout=subprocess.DEVNULL), dst),
        best_of(partial(convert_image, src, dst, disk_type=disk_type), dst),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pyhv-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        folder = Path(tmp)
        make_inputs(folder)
        head = ("qemu-img", "qemu+sync", "pyhv cli", "pyhv lib", "cli/qemu", "lib/qemu")
        print(f"{'case':<22}" + "".join(f"{h:>11}" for h in head))
        worst = 0.0
        for name, src_name, dst_name, qemu_opts, pyhv_opts in CASES:
            times = measure(folder / src_name, folder / dst_name, qemu_opts, pyhv_opts)
            _, durable, cli, lib = times
            worst = max(worst, cli / durable, lib / durable)
            print(
                f"{name:<22}"
                + "".join(f"{t:>10.2f}s" for t in times)
                + f"{cli / durable:>11.2f}{lib / durable:>11.2f}"
            )
        print(f"ratios against qemu-img + sync; worst: {worst:.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
