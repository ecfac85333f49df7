"""``pyhvd``: the management service, in the foreground (systemd or a terminal runs it).

It serves the API on ``PYHV_HOME/run/pyhvd.sock`` and, with ``--tcp``, on a TCP port with
bearer tokens (and TLS when given a certificate). Stopping pyhvd never stops a VM: workers run
in their own sessions, and the next pyhvd picks them up again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import grp
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from pyhv.errors import PyhvError, UsageError
from pyhv.host.resources import HostResources
from pyhv.inventory import Inventory
from pyhv.paths import HomePaths, check_socket_path
from pyhv.service import default_socket
from pyhv.service.api.deps import Services
from pyhv.service.app import listener_app
from pyhv.service.auth import (
    PYHV_GROUP,
    LocalAuthenticator,
    PeerCheckedProtocol,
    TokenAuthenticator,
)
from pyhv.service.confine import StorageRoots, storage_roots
from pyhv.service.events import EventBus
from pyhv.service.jobs import Jobs
from pyhv.service.manager import VmManager
from pyhv.service.policies import detect_cgroups
from pyhv.service.porting import VmPorter
from pyhv.service.supervisor import WorkerSupervisor
from pyhv.worker.spawner import ForkServer

log = logging.getLogger("pyhv.service")

SHUTDOWN_GRACE_S = 5


@dataclass(frozen=True)
class Options:
    home: Path
    socket: Path
    tcp: tuple[str, int] | None
    tls_cert: Path | None
    tls_key: Path | None
    log_level: str


def parse_args(argv: list[str] | None = None) -> Options:
    """:raises UsageError: for a bad ``--tcp`` or half a TLS pair."""
    p = argparse.ArgumentParser(prog="pyhvd", description="pyhv's management service.")
    p.add_argument(
        "--home", type=Path, help="state directory (default: $PYHV_HOME or /var/lib/pyhv)"
    )
    p.add_argument("--socket", type=Path, help="unix socket (default: HOME/run/pyhvd.sock)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="also serve TCP, with bearer tokens")
    p.add_argument("--tls-cert", type=Path, help="certificate (PEM) for --tcp")
    p.add_argument("--tls-key", type=Path, help="private key (PEM) for --tcp")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    a = p.parse_args(argv)
    paths = HomePaths(a.home)
    tcp = None
    if a.tcp:
        host, _, port = a.tcp.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--tcp {a.tcp!r}: give HOST:PORT, e.g. 127.0.0.1:8443")
        tcp = (host.strip("[]"), int(port))
    if (a.tls_cert is None) != (a.tls_key is None):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    if a.tls_cert is not None and tcp is None:
        raise UsageError("--tls-cert needs --tcp")
    return Options(
        home=paths.home,
        socket=a.socket or default_socket(paths),
        tcp=tcp,
        tls_cert=a.tls_cert,
        tls_key=a.tls_key,
        log_level=a.log_level,
    )


@contextlib.contextmanager
def single_instance(run_dir: Path) -> Iterator[None]:
    """:raises PyhvError: when another pyhvd already serves this home."""
    lock_path = run_dir / "pyhvd.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PyhvError(f"another pyhvd is running for this home (it holds {lock_path})") from None
    try:
        yield
    finally:
        os.close(fd)


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening socket only root and the group ``pyhv`` can reach (mode 0660)."""
    check_socket_path(path)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    with contextlib.suppress(KeyError):
        os.chown(path, -1, grp.getgrnam(PYHV_GROUP).gr_gid)
    os.chmod(path, 0o660)
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    """pyhvd handles signals once for all its listeners."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: object, **kwargs: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,  # pyhvd is no proxy's backend: trust no X-Forwarded-* header
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        **kwargs,  # type: ignore[arg-type]
    )


async def serve(opts: Options) -> None:
    paths = HomePaths(opts.home)
    events = EventBus()
    jobs = Jobs(events)
    roots = StorageRoots(storage_roots(paths.home))
    # Workers fork from a process that has imported them already: a VM start skips Python's
    # start-up. It imports in the background while pyhvd comes up.
    forkserver = ForkServer()
    forkserver.start()
    manager = VmManager(
        Inventory(paths),
        events,
        jobs,
        roots,
        HostResources.detect(),
        WorkerSupervisor(paths, forkserver),
        detect_cgroups(),
    )
    services = Services(manager=manager, porter=VmPorter(manager), jobs=jobs, events=events)
    sock = bind_unix_socket(opts.socket)
    servers = [
        _Server(_config(listener_app(services, LocalAuthenticator()), http=PeerCheckedProtocol))
    ]
    if opts.tcp is not None:
        tokens = TokenAuthenticator(paths.home / "tokens.json")
        servers.append(
            _Server(
                _config(
                    listener_app(services, tokens),
                    host=opts.tcp[0],
                    port=opts.tcp[1],
                    ssl_certfile=opts.tls_cert,
                    ssl_keyfile=opts.tls_key,
                )
            )
        )
    await manager.start()

    def stop(signum: int) -> None:
        log.info("signal %s: stopping (VMs keep running)", signal.Signals(signum).name)
        events.close()
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    log.info("pyhvd serving %s on %s%s", paths.home, opts.socket, _tcp_note(opts))
    try:
        await asyncio.gather(servers[0].serve(sockets=[sock]), *(s.serve() for s in servers[1:]))
    finally:
        await jobs.close()
        await manager.close()
        await asyncio.to_thread(forkserver.close)
        opts.socket.unlink(missing_ok=True)


def _tcp_note(opts: Options) -> str:
    if opts.tcp is None:
        return ""
    scheme = "https" if opts.tls_cert else "http"
    return f" and {scheme}://{opts.tcp[0]}:{opts.tcp[1]}"


def prepare_home(paths: HomePaths) -> None:
    """Create the home and its run folder on first start, as for the default /var/lib/pyhv.

    :raises PyhvError: one line naming the folder that cannot be made, not a bare errno.
    """
    for folder in (paths.home, paths.run_root):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PyhvError(
                f"cannot create {folder}: {err.strerror}; give --home (or PYHV_HOME) "
                "a folder pyhvd can create or write"
            ) from None


def main(argv: list[str] | None = None) -> None:
    """Run pyhvd; expected errors become one line on stderr and an exit code."""
    try:
        opts = parse_args(argv)
        logging.basicConfig(
            level=opts.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        paths = HomePaths(opts.home)
        prepare_home(paths)
        with single_instance(paths.run_root):
            asyncio.run(serve(opts))
    except PyhvError as err:
        print(f"pyhvd: error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except OSError as err:
        print(f"pyhvd: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
