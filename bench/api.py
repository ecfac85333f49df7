"""pyhvd API latency: 1000 registered VMs (not running), 50 concurrent clients.

Measures ``GET /vms`` (~200 KiB of JSON) and ``GET /vms/{id}`` against pyhvd and against a peer
measured in the same run: a bare uvicorn app (httptools, as pyhvd) answering the same bytes on
the same two transports, the floor any Python ASGI service on this machine can reach. Three
load generators, each against both servers:

- ``wrk`` (C, epoll, one thread) over TCP on loopback, to pyhvd's TCP listener with a reader's
  bearer token (the peer gets the same header and ignores it). The honest server figure: wrk
  needs a fraction of a core, so the server, not the client, sets the pace.
- ``raw``: a lean asyncio client over the unix socket (pyhvd's local transport, the CLI's),
  spread over several processes; it sends pre-built requests and counts Content-Length bytes
  instead of parsing JSON.
- ``httpx``: 50 AsyncClients in one Python process over the unix socket: what a Python client
  sees. Its own event loop is the bottleneck, so its latencies are mostly the client's.

The machine is shared, so each tool measures each server in several short rounds, alternating
which goes first, and reports medians; while one server is measured the other is stopped
(SIGSTOP), so it takes no CPU. Prints p50, p99 and requests/s per server and the ratios
pyhvd/peer. Goal: p99 < 50 ms. Asserts nothing.

    .venv/bin/python bench/api.py [--vms 1000] [--clients 50] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import itertools
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from pyhv.atomicfile import write_atomic
from pyhv.model import VmConfig
from pyhv.paths import HomePaths

PEER_APP = textwrap.dedent(
    """
    import socket, sys, uvicorn
    LIST = open(sys.argv[3], "rb").read()
    ONE = open(sys.argv[4], "rb").read()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = LIST if scope["path"] == "/vms" else ONE
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    unix = socket.socket(socket.AF_UNIX)
    unix.bind(sys.argv[1])
    # IPPROTO_TCP, as getaddrinfo gives it: asyncio sets TCP_NODELAY only on such sockets.
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", int(sys.argv[2])))
    for s in (unix, tcp):
        s.listen(1024)
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning",
                            access_log=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[unix, tcp])
    """
)

WRK_CYCLE = textwrap.dedent(
    """
    local i = 0
    request = function()
      i = i + 1
      return wrk.format("GET", paths[(i % #paths) + 1])
    end
    """
)

Result = tuple[float, float, float]  # p50 ms, p99 ms, requests/s


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    sock: Path
    port: int


Runner = Callable[[Server, list[str]], Result]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


@contextlib.contextmanager
def alone(server: Server, servers: list[Server]) -> Iterator[None]:
    """``server`` is the only one of ``servers`` running meanwhile."""
    others = [s for s in servers if s is not server]
    for s in others:
        s.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for s in others:
            s.proc.send_signal(signal.SIGCONT)


def percentiles(latencies: list[float], wall: float) -> Result:
    q = statistics.quantiles(latencies, n=100)
    return q[49] * 1000, q[98] * 1000, len(latencies) / wall


# -- wrk ---------------------------------------------------------------------------------------

_WRK_PCT = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_WRK_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def run_wrk(
    port: int, paths: list[str], token: str, clients: int, seconds: float, workdir: Path
) -> Result:
    """One path is wrk's URL; several go through a script that cycles through them."""
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--latency"]
    argv += ["-H", f"Authorization: Bearer {token}"]
    if len(paths) > 1:
        script = workdir / "paths.lua"
        script.write_text("paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n" + WRK_CYCLE)
        argv += ["-s", str(script)]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}{paths[0]}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        print(textwrap.indent(out, "    wrk: "))
    pct = {m[1]: float(m[2]) * _WRK_UNIT_MS[m[3]] for m in _WRK_PCT.finditer(out)}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if len(pct) != 2 or rate is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return pct["50"], pct["99"], float(rate[1])


# -- raw: lean asyncio client over the unix socket ---------------------------------------------


class RawClient(asyncio.Protocol):
    """One keep-alive connection sending pre-built requests back to back; it reads the status
    line and Content-Length and counts the body's bytes, parsing nothing else."""

    def __init__(self, requests: list[bytes], stop_at: float, latencies: list[float]) -> None:
        self._requests = itertools.cycle(requests)
        self._stop_at = stop_at
        self._latencies = latencies
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._left = -1
        self._t0 = 0.0
        self.errors = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._t0 = time.perf_counter()
        if self._t0 >= self._stop_at:
            self._transport.close()
            return
        self._head, self._left = b"", -1
        self._transport.write(next(self._requests))

    def data_received(self, data: bytes) -> None:
        if self._left < 0:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._head[:end].lower()
            self.errors += head[9:12] != b"200"
            length = int(head.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
            self._left = length - (len(self._head) - end - 4)
        else:
            self._left -= len(data)
        if self._left == 0:
            self._latencies.append(time.perf_counter() - self._t0)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _raw_connections(
    sock: str, per_connection: list[list[bytes]], seconds: float
) -> tuple[list[float], int]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    clients = []
    for requests in per_connection:
        _, client = await loop.create_unix_connection(
            functools.partial(RawClient, requests, stop_at, latencies), sock
        )
        clients.append(client)
    await asyncio.gather(*(c.closed for c in clients))
    return latencies, sum(c.errors for c in clients)


def _raw_process(sock: str, per_connection: list[list[bytes]], seconds: float) -> tuple:
    return asyncio.run(_raw_connections(sock, per_connection, seconds))


def run_raw(sock: Path, paths: list[str], clients: int, procs: int, seconds: float) -> Result:
    """``clients`` connections over ``procs`` processes, each cycling through ``paths`` from
    its own starting point."""
    requests = [f"GET {p} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for p in paths]
    conns = [requests[i:] + requests[:i] for i in range(clients)]
    shares = [conns[i::procs] for i in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        t0 = time.perf_counter()
        results = pool.starmap(_raw_process, [(str(sock), s, seconds) for s in shares])
        wall = max(time.perf_counter() - t0, seconds)
    latencies = [x for lat, _ in results for x in lat]
    errors = sum(e for _, e in results)
    if errors:
        print(f"    raw: {errors} answers were not 200")
    return percentiles(latencies, wall)


# -- httpx: what a Python client sees ----------------------------------------------------------


async def _httpx_load(sock: Path, paths: list[str], clients: int, requests: int) -> Result:
    """Each client keeps one connection. The clients are built and connected before the clock
    starts: building one loads CA certificates for TLS, tens of milliseconds during which the
    loop would stall everybody else's requests."""
    latencies: list[float] = []
    urls = itertools.islice(itertools.cycle(paths), requests)

    async def client(c: httpx.AsyncClient, timed: bool) -> None:
        for url in urls if timed else paths[:1]:
            t0 = time.perf_counter()
            r = await c.get(url)
            if timed:
                latencies.append(time.perf_counter() - t0)
            r.raise_for_status()

    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.AsyncHTTPTransport(uds=str(sock)),
                    base_url="http://x",
                    timeout=60,
                )
            )
            for _ in range(clients)
        ]
        await asyncio.gather(*(client(c, timed=False) for c in pool))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, timed=True) for c in pool))
        return percentiles(latencies, time.perf_counter() - t0)


def run_httpx(sock: Path, paths: list[str], clients: int, requests: int) -> Result:
    return asyncio.run(_httpx_load(sock, paths, clients, requests))


# -- the run -----------------------------------------------------------------------------------


def measure(
    run: Runner, paths: list[str], servers: list[Server], rounds: int
) -> dict[str, list[Result]]:
    """``rounds`` runs per server, alternating which goes first, so that a burst of load from
    elsewhere on the machine, or the client's own warm-up, hits one round, not one server."""
    results: dict[str, list[Result]] = {s.name: [] for s in servers}
    for r in range(rounds):
        for server in servers if r % 2 == 0 else servers[::-1]:
            gc.collect()  # the last run's garbage (httpx clients) is not collected in this one
            with alone(server, servers):
                results[server.name].append(run(server, paths))
    return results


def median(results: list[Result]) -> Result:
    p50, p99, rate = (statistics.median(column) for column in zip(*results, strict=True))
    return p50, p99, rate


def show(label: str, name: str, results: list[Result]) -> None:
    p50, p99, rate = median(results)
    each = "/".join(f"{r[1]:.0f}" for r in results)
    print(
        f"  {label:<15} {name:<6} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   {rate:8.0f} req/s"
        + (f"   (p99 per round: {each} ms)" if len(results) > 1 else "")
    )


def show_ratio(ours: Result, peer: Result) -> None:
    goal = "met" if ours[1] < 50 else "NOT met"
    print(
        f"  {'':<15} pyhvd/peer: p50 x{ours[0] / peer[0]:.2f}   p99 x{ours[1] / peer[1]:.2f}   "
        f"rate x{ours[2] / peer[2]:.2f}   (goal pyhvd p99 < 50 ms: {goal})"
    )


def start_pyhvd(home: Path, port: int) -> Server:
    log = open(home / "pyhvd.log", "wb")  # noqa: SIM115 - lives as long as pyhvd
    argv = [sys.executable, "-m", "pyhv.service", "--log-level", "warning"]
    proc = subprocess.Popen(
        [*argv, "--tcp", f"127.0.0.1:{port}"],
        env=dict(os.environ, PYHV_HOME=str(home)),
        stdout=log,
        stderr=log,
    )
    sock = home / "run" / "pyhvd.sock"
    t0 = time.perf_counter()
    wait_for_socket(sock, proc)
    print(f"pyhvd up in {time.perf_counter() - t0:.1f} s")
    return Server("pyhvd", proc, sock, port)


def start_peer(home: Path, port: int) -> Server:
    sock = home / "peer.sock"
    argv = [sys.executable, "-c", PEER_APP, str(sock), str(port)]
    proc = subprocess.Popen([*argv, str(home / "list.json"), str(home / "one.json")])
    wait_for_socket(sock, proc)
    return Server("peer", proc, sock, port)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3, help="per wrk and raw measurement")
    ap.add_argument("--rounds", type=int, default=3, help="per tool and server")
    ap.add_argument("--raw-procs", type=int, default=2, help="processes of the raw client")
    ap.add_argument("--httpx-requests", type=int, default=1000, help="per httpx measurement")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="pyhvb", dir="/tmp"))
    servers: list[Server] = []
    try:
        t0 = time.perf_counter()
        ids = register_vms(home, args.vms)
        print(f"{args.vms} VMs registered in {time.perf_counter() - t0:.1f} s")
        token = secrets.token_hex(16)
        (home / "tokens.json").write_text(
            f'{{"tokens": [{{"name": "bench", "role": "reader", "token": "{token}"}}]}}'
        )
        servers.append(start_pyhvd(home, free_port()))
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(servers[0].sock))) as c:
            (home / "list.json").write_bytes(c.get("http://x/vms").content)
            (home / "one.json").write_bytes(c.get(f"http://x/vms/{ids[0]}").content)
        print(f"GET /vms body: {(home / 'list.json').stat().st_size / 1024:.0f} KiB")
        servers.append(start_peer(home, free_port()))
        endpoints = {"GET /vms": ["/vms"], "GET /vms/{id}": [f"/vms/{i}" for i in ids]}
        per_round = f"median of {args.rounds} rounds of {args.seconds:g} s"
        tools: dict[str, tuple[str, Runner]] = {
            "wrk": (
                f"wrk (C, 1 thread, {args.clients} connections; {per_round}) "
                "over TCP 127.0.0.1 with a bearer token",
                lambda s, p: run_wrk(s.port, p, token, args.clients, args.seconds, home),
            ),
            "raw": (
                f"raw asyncio client ({args.raw_procs} processes, {args.clients} connections; "
                f"{per_round}) over the unix socket",
                lambda s, p: run_raw(s.sock, p, args.clients, args.raw_procs, args.seconds),
            ),
            "httpx": (
                f"httpx ({args.clients} AsyncClients in 1 process, {args.httpx_requests} "
                f"requests; median of {args.rounds} rounds) over the unix socket: "
                "client-bound, what a Python client sees",
                lambda s, p: run_httpx(s.sock, p, args.clients, args.httpx_requests),
            ),
        }
        if shutil.which("wrk") is None:
            print("wrk is not installed (`make deps` installs it): no wrk figures")
            del tools["wrk"]
        for description, run in tools.values():
            print(f"[{description}]")
            for label, paths in endpoints.items():
                results = measure(run, paths, servers, args.rounds)
                for name, each in results.items():
                    show(label, name, each)
                show_ratio(median(results["pyhvd"]), median(results["peer"]))
    finally:
        for s in servers:
            s.proc.send_signal(signal.SIGCONT)
            if s.proc.poll() is None:
                s.proc.terminate()
                s.proc.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
