"""pyhvd API latency: 1000 registered VMs, 50 concurrent clients over the unix socket.

Measures ``GET /vms`` and ``GET /vms/{id}`` against pyhvd, and against a peer measured in the
same run: a bare uvicorn app answering the same bytes on a unix socket, which is the floor any
Python ASGI service on this machine can reach. Prints p50/p99 latency, requests per second and
the ratios pyhvd/peer. Goal: p99 < 50 ms. Asserts nothing.

    .venv/bin/python bench/api.py [--vms 1000] [--clients 50] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from pyhv.atomicfile import write_atomic
from pyhv.model import VmConfig
from pyhv.paths import HomePaths

PEER_APP = textwrap.dedent(
    """
    import sys, uvicorn
    LIST = open(sys.argv[2], "rb").read()
    ONE = open(sys.argv[3], "rb").read()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = LIST if scope["path"] == "/vms" else ONE
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, uds=sys.argv[1], log_level="warning", http="httptools", lifespan="off")
    """
)


def register_vms(home: Path, count: int) -> list[str]:
    """Write the configs directly, as an existing inventory pyhvd starts on."""
    paths = HomePaths(home)
    ids = []
    for i in range(count):
        config = VmConfig(name=f"vm-{i:04d}", memory_startup_mib=512, notes="bench")
        paths.vm_dir(config.id).mkdir(parents=True)
        write_atomic(paths.vm_config(config.id), config.model_dump_json(indent=2).encode())
        ids.append(config.id)
    return ids


def wait_for_socket(sock: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        if sock.exists():
            try:
                with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as c:
                    if c.get("http://x/vms").status_code == 200:
                        return
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"no answer on {sock}")


async def load(sock: Path, urls: list[str], clients: int) -> tuple[list[float], float]:
    """Latencies (s) of every request, and the wall time; each client keeps one connection."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    latencies: list[float] = []

    async def client() -> None:
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://x", timeout=60) as c:
            while not queue.empty():
                url = queue.get_nowait()
                t0 = time.perf_counter()
                r = await c.get(url)
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - t0


def report(label: str, latencies: list[float], wall: float) -> tuple[float, float, float]:
    q = statistics.quantiles(latencies, n=100)
    p50, p99, rate = q[49] * 1000, q[98] * 1000, len(latencies) / wall
    print(f"  {label:<28} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   {rate:8.0f} req/s")
    return p50, p99, rate


def measure(sock: Path, ids: list[str], clients: int, requests: int) -> dict[str, tuple]:
    out = {}
    list_urls = ["/vms"] * (requests // 4)
    get_urls = [f"/vms/{ids[i % len(ids)]}" for i in range(requests)]
    asyncio.run(load(sock, list_urls[: clients * 2] + get_urls[: clients * 2], clients))  # warm
    out["GET /vms"] = report("GET /vms", *asyncio.run(load(sock, list_urls, clients)))
    out["GET /vms/{id}"] = report("GET /vms/{id}", *asyncio.run(load(sock, get_urls, clients)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="pyhvb", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        ids = register_vms(home, args.vms)
        print(
            f"{args.vms} VMs registered in {time.perf_counter() - t0:.1f} s; "
            f"{args.clients} clients, {args.requests} requests per endpoint"
        )
        env = dict(os.environ, PYHV_HOME=str(home))
        sock = home / "run" / "pyhvd.sock"
        log = open(home / "pyhvd.log", "wb")  # noqa: SIM115 - lives as long as pyhvd
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pyhv.service", "--log-level", "warning"],
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        t0 = time.perf_counter()
        wait_for_socket(sock, procs[-1])
        print(f"pyhvd up in {time.perf_counter() - t0:.1f} s")

        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as c:
            (home / "list.json").write_bytes(c.get("http://x/vms").content)
            (home / "one.json").write_bytes(c.get(f"http://x/vms/{ids[0]}").content)
        print(f"  GET /vms body: {(home / 'list.json').stat().st_size / 1024:.0f} KiB")

        print("pyhvd:")
        ours = measure(sock, ids, args.clients, args.requests)
        procs[-1].terminate()
        procs[-1].wait()

        peer_sock = home / "peer.sock"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PEER_APP,
                    str(peer_sock),
                    str(home / "list.json"),
                    str(home / "one.json"),
                ]
            )
        )
        wait_for_socket(peer_sock, procs[-1])
        print("peer (bare uvicorn, same bytes, same socket kind):")
        peer = measure(peer_sock, ids, args.clients, args.requests)

        print("ratios pyhvd/peer (latency: lower is better; rate: higher is better):")
        for key in ours:
            (p50, p99, rate), (pp50, pp99, prate) = ours[key], peer[key]
            goal = "met" if p99 < 50 else "NOT met"
            print(
                f"  {key:<28} p50 x{p50 / pp50:.2f}   p99 x{p99 / pp99:.2f}   "
                f"rate x{rate / prate:.2f}   (goal p99 < 50 ms: {goal})"
            )
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
