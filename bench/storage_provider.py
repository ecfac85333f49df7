"""Storage provider throughput: pyhv's NBD export vs qemu-nbd vs QEMU opening the file itself.

Runs ``qemu-img bench`` against one image through four paths, in one run:

1. ``pyhv``         — :class:`pyhv.storage.nbd.NbdServer` in a separate process (image through
                      ``pyhv.storage.open_image``; page cache, like every pyhv image);
2. ``qnbd-odirect`` — the C peer, ``qemu-nbd --cache=none --aio=native``: O_DIRECT, as issue 4
                      measured it, and the peer its goal (pyhv ≥ 1.0 × this on every case) is
                      about;
3. ``direct``       — ``qemu-img bench -t none -i native`` on the file (QEMU's own driver with
                      O_DIRECT, no NBD hop: the limit issue 4 compares qemu-nbd with);
4. ``qnbd-wb``      — ``qemu-nbd --cache=writeback``: the peer with the same page cache pyhv uses,
                      for a like-for-like reading (O_DIRECT pays the device on every request,
                      so ``pyhv/qnbd-odirect`` partly measures the page cache). The images
                      were just written, so the cache is warm for pyhv and ``qnbd-wb``: small
                      reads take pyhv's on-loop path; uncached ones would go to its threads.

Cases: 4 KiB and 1 MiB, read and write, queue depth 1 and 16. Prints IOPS and MB/s per path,
the ratio of pyhv to each other path (> 1: pyhv is faster), and per format the smallest ratio
against each. Formats: raw, and a dynamic VHDX when pyhv opens it. All servers stay up and the
paths take turns case by case, best of ``--rounds``, because the build machine is shared and
its load drifts (QEMU's image locking is off so they can coexist). Asserts nothing (see
DESIGN.md, "Benchmarks"); a full run takes three to four minutes.

    .venv/bin/python bench/storage_provider.py [--size-mib 256] [--formats raw,vhdx]
                                               [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXPORT = "disk"
MiB = 1024 * 1024
PATHS = ("pyhv", "qnbd-odirect", "direct", "qnbd-wb")  # see the module docstring
PEERS = PATHS[1:]
LEGEND = """ratios pyhv/peer > 1: pyhv is faster
  qnbd-odirect: qemu-nbd --cache=none --aio=native (O_DIRECT): issue 4's peer
  direct:       QEMU's own file driver, O_DIRECT, no NBD hop
  qnbd-wb:      qemu-nbd --cache=writeback: page cache, as pyhv (like for like)"""


@dataclass(frozen=True)
class Case:
    size: int
    write: bool
    depth: int
    count: int

    @property
    def label(self) -> str:
        unit = f"{self.size // 1024}K" if self.size < MiB else f"{self.size // MiB}M"
        return f"{unit} {'write' if self.write else 'read '} qd{self.depth}"


def cases(quick: bool) -> list[Case]:
    scale = 4 if quick else 1
    out = []
    for size, counts in ((4096, (6000, 20000)), (MiB, (600, 1500))):
        for write in (False, True):
            for depth, count in zip((1, 16), counts, strict=True):
                out.append(Case(size, write, depth, count // scale))
    return out


def qemu_opts(fmt: str, image: Path) -> str:
    """``--image-opts`` for QEMU opening ``image`` without its file lock."""
    return f"driver={fmt},file.driver=file,file.filename={image},file.locking=off"


def bench(target: str, case: Case, extra: list[str]) -> float:
    """Seconds ``qemu-img bench`` needed for the case."""
    argv = ["qemu-img", "bench", "-t", "none", *extra]
    argv += ["-c", str(case.count), "-d", str(case.depth), "-s", str(case.size)]
    if case.write:
        argv.append("-w")
    out = subprocess.run([*argv, target], capture_output=True, text=True, timeout=300)
    m = re.search(r"Run completed in ([0-9.]+) seconds", out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"{' '.join(argv)} {target}: {out.stderr.strip() or out.stdout}")
    return float(m.group(1))


def say_goodbye(sock: socket.socket) -> None:
    """Greeting, client flags, NBD_OPT_ABORT, its ACK: a probe servers do not log as an error."""
    sock.settimeout(30)
    sock.recv(18)
    sock.sendall(struct.pack(">IQII", 3, 0x49484156454F5054, 2, 0))  # flags, IHAVEOPT, ABORT
    sock.recv(20)


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the server accepts connections (the socket file exists a moment earlier)."""
    deadline = time.monotonic() + 30
    while True:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                say_goodbye(s)
                return
            except (FileNotFoundError, ConnectionRefusedError):
                pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server for {path} did not start")
        time.sleep(0.05)


@contextmanager
def server(argv: list[str], sock: Path) -> Iterator[str]:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        wait_for_socket(sock, proc)
        yield f"nbd+unix:///{EXPORT}?socket={sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sock.unlink(missing_ok=True)


def serve_pyhv(sock: str, image_path: str) -> None:
    """``--serve`` mode: run the provider until terminated (the benchmark's separate process)."""
    import signal

    from pyhv.storage import open_image
    from pyhv.storage.nbd import NbdServer

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        with open_image(image_path, writable=True) as image:
            async with NbdServer(sock) as srv:
                srv.add_export(EXPORT, image, read_only=False)
                await stop.wait()

    asyncio.run(main())


def make_images(workdir: Path, size: int, formats: list[str]) -> dict[str, Path]:
    """A raw image full of data, and converted copies (all clusters allocated)."""
    raw = workdir / "disk.raw"
    block = os.urandom(MiB)
    with raw.open("wb") as f:
        for _ in range(size // MiB):
            f.write(block)
    images = {"raw": raw}
    if "vhdx" in formats:
        vhdx = workdir / "disk.vhdx"
        convert = ["qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic"]
        subprocess.run([*convert, str(raw), str(vhdx)], check=True)
        images["vhdx"] = vhdx
    return images


def pyhv_opens(path: Path) -> str | None:
    """None when pyhv can serve ``path``, else why not."""
    from pyhv.errors import PyhvError
    from pyhv.storage import open_image

    try:
        open_image(path, writable=True).close()
    except PyhvError as err:
        return str(err)
    return None


def run_format(fmt: str, image: Path, workdir: Path, all_cases: list[Case], rounds: int) -> None:
    reason = pyhv_opens(image)
    if reason is not None:
        print(f"\n== {fmt}: skipped, pyhv cannot open it yet: {reason}")
        return
    py_sock, q_sock, wb_sock = (workdir / n for n in ("pyhv.sock", "qnbd.sock", "qnbd-wb.sock"))
    qnbd = ["qemu-nbd", "-t", "-x", EXPORT, "-e", "16", "--image-opts"]
    opts = qemu_opts(fmt, image)
    print(f"\n== {fmt}: {image} ({image.stat().st_size // MiB} MiB on disk)")
    ratios = "".join(f"{'pyhv/' + peer:>19}" for peer in PEERS)
    print(f"{'case':<15}" + "".join(f"{n:>22}" for n in PATHS) + ratios)
    print(f"{'':<15}" + f"{'IOPS     MB/s':>22}" * len(PATHS))
    worst = dict.fromkeys(PEERS, float("inf"))
    with (
        server([sys.executable, __file__, "--serve", str(py_sock), str(image)], py_sock) as py,
        server([*qnbd, "--cache=none", "--aio=native", "-k", str(q_sock), opts], q_sock) as qn,
        server([*qnbd, "--cache=writeback", "-k", str(wb_sock), opts], wb_sock) as wb,
    ):
        targets = {
            "pyhv": (py, ["-f", "raw"]),
            "qnbd-odirect": (qn, ["-f", "raw"]),
            "direct": (opts, ["--image-opts", "-i", "native"]),
            "qnbd-wb": (wb, ["-f", "raw"]),
        }
        for case in all_cases:
            secs = {name: float("inf") for name in targets}
            for _ in range(rounds):
                for name, (target, extra) in targets.items():
                    secs[name] = min(secs[name], bench(target, case, extra))
            row = f"{case.label:<15}"
            for s in secs.values():
                iops = case.count / s
                row += f"{iops:>12.0f} {iops * case.size / 1e6:>9.1f}"
            for peer in PEERS:
                ratio = secs[peer] / secs["pyhv"]
                worst[peer] = min(worst[peer], ratio)
                row += f"{ratio:>19.2f}"
            print(row, flush=True)
    print(
        f"{fmt}: smallest ratio over all cases: "
        + ", ".join(f"pyhv/{p} {worst[p]:.2f}" for p in PEERS)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", nargs=2, metavar=("SOCKET", "IMAGE"), help=argparse.SUPPRESS)
    ap.add_argument("--size-mib", type=int, default=256, help="image size (default 256)")
    ap.add_argument("--formats", default="raw,vhdx", help="comma list of raw, vhdx")
    ap.add_argument("--rounds", type=int, default=2, help="runs per case and path; best counts")
    ap.add_argument("--quick", action="store_true", help="a quarter of the requests, one round")
    args = ap.parse_args()
    if args.serve:
        serve_pyhv(*args.serve)
        return
    for tool in ("qemu-img", "qemu-nbd"):
        if shutil.which(tool) is None:
            sys.exit(f"storage_provider: {tool} not found: install qemu-utils (make deps)")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    # O_DIRECT needs a real file system: keep the images off tmpfs.
    with tempfile.TemporaryDirectory(prefix="pyhv-bench-", dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        images = make_images(workdir, args.size_mib * MiB, formats)
        print(f"qemu-img bench{' (quick)' if args.quick else ''}; {LEGEND}")
        for fmt in formats:
            run_format(
                fmt, images[fmt], workdir, cases(args.quick), 1 if args.quick else args.rounds
            )


if __name__ == "__main__":
    main()
