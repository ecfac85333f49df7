"""The CLI's one way to the VMs: pyhvd's API through :class:`~pyhv.client.PyhvClient`.

Commands call a :class:`Backend` and never see HTTP. Where pyhvd listens: ``--socket`` or
``PYHV_SOCKET``, else ``PYHV_HOME/run/pyhvd.sock``; ``PYHV_URL`` (with ``PYHV_TOKEN`` and,
for a private CA, ``PYHV_CA``) reaches a remote pyhvd over TCP instead. Long operations are jobs
in the API: :meth:`Backend.power` shows their progress and waits for them.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from pyhv.client import PyhvClient, VmStateLine
from pyhv.errors import StateError
from pyhv.service.operations import Power

if TYPE_CHECKING:
    import typer
    from websockets.sync.client import ClientConnection

    from pyhv.model import DvdDrive, VmConfig, VmState
    from pyhv.service.jobs import Job
    from pyhv.service.schemas import (
        DiskAdd,
        DiskQos,
        DiskSlot,
        ExecOutput,
        HostInfo,
        VmDisks,
        VmSample,
        VmSummary,
        VmView,
    )

SOCKET_ENV = "PYHV_SOCKET"
URL_ENV = "PYHV_URL"
TOKEN_ENV = "PYHV_TOKEN"
CA_ENV = "PYHV_CA"
SOCKET_HELP = "pyhvd's unix socket (default: $PYHV_SOCKET, else PYHV_HOME/run/pyhvd.sock)."
JOB_TIMEOUT_S = 3600.0

_VERB = {
    Power.START: "starting",
    Power.STOP: "shutting down",
    Power.TURN_OFF: "turning off",
    Power.SAVE: "saving",
    Power.PAUSE: "pausing",
    Power.RESUME: "resuming",
    Power.RESTART: "restarting",
}


def connect(socket: Path | None = None) -> Backend:
    """The backend for this environment (nothing is sent until the first call)."""
    url = os.environ.get(URL_ENV)
    if url and socket is None:
        client = PyhvClient(
            base_url=url,
            token=os.environ.get(TOKEN_ENV) or None,
            verify=os.environ.get(CA_ENV) or True,
        )
    else:
        client = PyhvClient(socket or os.environ.get(SOCKET_ENV) or None)
    return Backend(client)


def add_socket_option(app: typer.Typer, help_text: str) -> None:
    """Give a noun's command group the ``--socket`` option: its callback connects, putting the
    backend in the context for :func:`backend_of`."""
    import typer

    def options(
        ctx: typer.Context,
        socket: Path | None = typer.Option(None, "--socket", help=SOCKET_HELP),
    ) -> None:
        ctx.obj = connect(socket)

    # typer resolves the annotations in this module, which imports typer for type checks only.
    options.__annotations__ = {"ctx": typer.Context, "socket": Path | None, "return": None}
    app.callback(help=help_text)(options)


def backend_of(ctx: typer.Context) -> Backend:
    """The backend that a command group's callback put in the context (``ctx.obj``)."""
    backend = ctx.find_object(Backend)
    assert backend is not None, "the command group's callback makes the backend"
    return backend


class Backend:
    def __init__(self, client: PyhvClient) -> None:
        self.client = client
        self._out = Console(stderr=True)  # progress; stdout stays for results

    def host(self) -> HostInfo:
        return self.client.host()

    def create(self, config: VmConfig) -> VmView:
        return self.client.create_vm(config)

    def vms(self) -> list[tuple[VmSummary, VmSample | None]]:
        """Every VM with statistics for those that run."""
        return [(s, self._sample(s.id, s.state)) for s in self.client.list_vms()]

    def vm(self, name: str) -> tuple[VmView, VmSample | None]:
        view = self.client.get_vm(name)
        return view, self._sample(view.config.id, view.status.state)

    def _sample(self, vm: str, state: VmState) -> VmSample | None:
        if state not in ("Running", "Paused"):
            return None
        try:
            return self.client.stats(vm)
        except StateError:  # it stopped meanwhile
            return None

    def power(
        self,
        name: str,
        op: Power,
        *,
        ready_timeout_s: float | None = None,
        shutdown_timeout_s: float | None = None,
    ) -> VmStateLine:
        """Run a power operation as a job, showing its progress; the VM's state afterwards.

        Builds no model on the way: this is the path of ``pyhv vm start`` and friends, whose
        start-up time is part of every VM start.

        :raises PyhvError: what the operation was refused or failed with.
        """
        job = self.client.power_job(
            name, op, ready_timeout_s=ready_timeout_s, shutdown_timeout_s=shutdown_timeout_s
        )
        self._follow(str(job["id"]), int(job["progress"]), f"VM '{name}': {_VERB[op]}")
        return self.client.vm_state(name)

    def follow(self, job: Job, label: str) -> None:
        """Show the job's progress until it ends.

        :raises PyhvError: what the job failed with.
        """
        self._follow(job.id, job.progress, label)

    def _follow(self, job_id: str, progress_now: int, label: str) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f} %"),
            TimeElapsedColumn(),
        )
        # Off a terminal there is no bar to show, and rich would leave an empty line on stderr
        # before the one-line error or result a script reads.
        quiet = not self._out.is_terminal
        with Progress(*columns, console=self._out, transient=True, disable=quiet) as progress:
            task = progress.add_task(label, total=100, completed=progress_now)
            self.client.follow_job(
                job_id, JOB_TIMEOUT_S, lambda j: progress.update(task, completed=j["progress"])
            )

    def exec(self, name: str, argv: list[str], timeout_s: float) -> ExecOutput:
        return self.client.exec(name, argv, timeout_s=timeout_s)

    def remove(self, name: str) -> VmConfig:
        """Remove-VM; the configuration it had."""
        config = self.client.get_vm(name).config
        self.client.remove_vm(config.id)
        return config

    def disks(self, name: str) -> VmDisks:
        return self.client.disks(name)

    def add_disk(self, name: str, disk: DiskAdd) -> DiskSlot:
        return self.client.add_disk(name, disk)

    def remove_disk(self, name: str, controller: int, slot: int) -> DiskSlot:
        return self.client.remove_disk(name, controller, slot)

    def set_disk_qos(self, name: str, controller: int, slot: int, qos: DiskQos) -> DiskSlot:
        return self.client.set_disk_qos(name, controller, slot, qos)

    def set_dvd(self, name: str, iso: Path | None) -> DvdDrive:
        """Insert ``iso``, or eject with None."""
        if iso is None:
            return self.client.eject_dvd(name)
        return self.client.insert_dvd(name, iso)

    def console_log(self, name: str) -> bytes:
        return self.client.console_log(name)

    def console(self, name: str) -> AbstractContextManager[ClientConnection]:
        """The live serial console, open inside ``with``."""
        return self.client.console(name)
