"""PyhvClient: the typed Python client of pyhvd's REST API.

Over the unix socket by default (``PYHV_HOME/run/pyhvd.sock``), or over TCP with a bearer
token. Every error pyhvd reports comes back as the :class:`~pyhv.errors.PyhvError` subclass it
was raised as, with the same one-line message; a pyhvd that does not answer is an
:class:`~pyhv.errors.ApiError` saying how to start it.

    with PyhvClient() as c:
        vm = c.create_vm(VmConfig(name="web", memory_startup_mib=1024))
        c.wait_job(c.start(vm.config.id).id)
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect, unix_connect

from pyhv.checkpoints import Checkpoint, CheckpointTree, CheckpointType
from pyhv.errors import ApiError
from pyhv.model import DvdDrive, VmConfig
from pyhv.paths import HomePaths
from pyhv.service import default_socket
from pyhv.service.commands import Power
from pyhv.service.error_codes import error_class
from pyhv.service.events import Event
from pyhv.service.jobs import Job, JobState
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import (
    CheckpointCreate,
    CheckpointJob,
    CheckpointRename,
    CompatibilityReport,
    DiskAdd,
    DiskQos,
    DiskSlot,
    DvdInsert,
    ExecOutput,
    ExecRequest,
    ExportRequest,
    HostInfo,
    ImportMode,
    ImportRequest,
    VmDisks,
    VmPatch,
    VmSample,
    VmSummary,
    VmView,
)

M = TypeVar("M", bound=BaseModel)

JOB_POLL_S = 0.1


def raise_for_problem(response: httpx.Response) -> None:
    """:raises PyhvError: the class named by the problem's ``code``, with its ``detail``."""
    if response.is_success:
        return
    try:
        body = response.json()
        code, detail = str(body["code"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        raise ApiError(f"pyhvd answered {response.status_code}: {text}") from None
    raise error_class(code)(detail)


class PyhvClient:
    def __init__(
        self,
        socket_path: str | Path | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
        verify: bool | str = True,
    ) -> None:
        """``verify`` is False, True (system CAs) or the path of a CA/certificate file."""
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self.base_url = base_url
        self.socket_path: Path | None = None
        self._verify = verify
        self._ssl = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else None
        if base_url is not None:
            self.where = base_url
            self._http = httpx.Client(
                base_url=base_url,
                headers=self._headers,
                timeout=timeout,
                verify=self._ssl or verify,
            )
        else:
            self.socket_path = Path(socket_path) if socket_path is not None else default_socket()
            self.where = str(self.socket_path)
            transport = httpx.HTTPTransport(uds=self.where)
            self._http = httpx.Client(
                transport=transport, base_url="http://pyhvd", headers=self._headers, timeout=timeout
            )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PyhvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def not_answering(self, err: Exception) -> ApiError:
        """The error for a pyhvd that cannot be reached, saying how to start it."""
        if self.socket_path is None:
            return ApiError(
                f"pyhvd does not answer at {self.where} ({type(err).__name__}): "
                "is it running, with --tcp?"
            )
        return ApiError(
            f"pyhvd is not running (nothing answers at {self.where}): start it with "
            f"`{start_command(self.socket_path)} &` or `systemctl start pyhvd`"
        )

    @contextlib.contextmanager
    def _connection_errors(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise self.not_answering(err) from err
        except httpx.TimeoutException as err:
            raise ApiError(f"pyhvd at {self.where} did not answer in time: {err}") from err
        except httpx.TransportError as err:
            raise ApiError(
                f"the connection to pyhvd at {self.where} failed ({type(err).__name__}): {err}"
            ) from err

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if "content" in kwargs:
            kwargs["headers"] = {"Content-Type": "application/json"}
        with self._connection_errors():
            response = self._http.request(method, url, **kwargs)
        raise_for_problem(response)
        return response

    def _get(self, url: str, model: type[M]) -> M:
        return model.model_validate_json(self._request("GET", url).content)

    # -- host and VMs ---------------------------------------------------------------------

    def host(self) -> HostInfo:
        return self._get("/host", HostInfo)

    def stop_all_vms(self, *, wait: bool = False) -> Job:
        """Carry out every running VM's automatic stop action (before a host shutdown)."""
        job = Job.model_validate_json(self._request("POST", "/host/stop-vms").content)
        return self.wait_job(job.id) if wait else job

    def list_vms(self) -> list[VmSummary]:
        return TypeAdapter(list[VmSummary]).validate_json(self._request("GET", "/vms").content)

    def get_vm(self, vm: str) -> VmView:
        """``vm`` is an id or a name."""
        return self._get(f"/vms/{vm}", VmView)

    def create_vm(self, config: VmConfig, policy: ProcessorPolicy | None = None) -> VmView:
        """Register a VM; pyhvd validates it (the config is sent as it is)."""
        body = config.model_dump(mode="json", warnings=False)
        body["policy"] = (policy or ProcessorPolicy()).model_dump(mode="json")
        response = self._request("POST", "/vms", content=json.dumps(body))
        return VmView.model_validate_json(response.content)

    def update_vm(self, vm: str, patch: VmPatch) -> VmView:
        content = patch.model_dump_json(exclude_none=True)
        return VmView.model_validate_json(
            self._request("PATCH", f"/vms/{vm}", content=content).content
        )

    def remove_vm(self, vm: str) -> None:
        self._request("DELETE", f"/vms/{vm}")

    # -- power: each returns the job; wait_job follows it -------------------------------------

    def power(
        self,
        vm: str,
        op: Power | str,
        *,
        wait: bool = False,
        ready_timeout_s: float | None = None,
        shutdown_timeout_s: float | None = None,
    ) -> Job:
        """Start a power operation; with ``wait``, return once its job has succeeded.

        ``ready_timeout_s`` (start only): the job also waits for the guest kit's ready line.
        ``shutdown_timeout_s`` (stop only): the guest's time to power off before it is turned off.

        :raises PyhvError: what the job failed with, when waiting.
        """
        given = {"ready_timeout_s": ready_timeout_s, "shutdown_timeout_s": shutdown_timeout_s}
        params = {k: v for k, v in given.items() if v is not None}
        response = self._request("POST", f"/vms/{vm}/{Power(op)}", params=params)
        job = Job.model_validate_json(response.content)
        return self.wait_job(job.id) if wait else job

    def start(self, vm: str, *, wait: bool = False, ready_timeout_s: float | None = None) -> Job:
        return self.power(vm, Power.START, wait=wait, ready_timeout_s=ready_timeout_s)

    def stop(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, Power.STOP, wait=wait)

    def turn_off(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, Power.TURN_OFF, wait=wait)

    def save(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, Power.SAVE, wait=wait)

    def pause(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, Power.PAUSE, wait=wait)

    def resume(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, Power.RESUME, wait=wait)

    def restart(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, Power.RESTART, wait=wait)

    def stats(self, vm: str) -> VmSample:
        return self._get(f"/vms/{vm}/stats", VmSample)

    def console_log(self, vm: str) -> bytes:
        return self._request("GET", f"/vms/{vm}/console/log").content

    @contextlib.contextmanager
    def console(self, vm: str) -> Iterator[ClientConnection]:
        """The VM's serial console as a websocket, binary messages both ways, closed on exit.

        :raises PyhvError: what pyhvd refused the console with (e.g. the VM does not run).
        """
        with self._websocket(f"/vms/{quote(vm, safe='')}/console") as conn:
            try:
                first = json.loads(conn.recv(timeout=self._timeout))
            except (ConnectionClosed, TimeoutError, ValueError) as err:
                raise ApiError(f"pyhvd did not open the console of VM {vm!r}: {err}") from err
            if not first.get("ok"):
                raise error_class(str(first.get("code")))(str(first.get("detail")))
            yield conn

    @contextlib.contextmanager
    def _websocket(self, path: str) -> Iterator[ClientConnection]:
        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(self._open_websocket(path))
            except InvalidStatus as err:
                body = bytes(err.response.body or b"")
                raise_for_problem(httpx.Response(err.response.status_code, content=body))
                raise ApiError(f"pyhvd refused the websocket: {err}") from err
            except InvalidHandshake as err:
                raise ApiError(f"pyhvd refused the websocket: {err}") from err
            except (OSError, TimeoutError) as err:
                raise self.not_answering(err) from err
            yield conn

    def _open_websocket(self, path: str) -> ClientConnection:
        """Not connected before it is entered (``with``), with websockets 17 and later."""
        if self.socket_path is not None:
            return unix_connect(
                str(self.socket_path), f"ws://pyhvd{path}", open_timeout=self._timeout
            )
        assert self.base_url is not None
        url = "ws" + self.base_url.removeprefix("http").rstrip("/") + path
        return connect(
            url,
            additional_headers=self._headers,
            ssl=self._websocket_ssl() if url.startswith("wss:") else None,
            open_timeout=self._timeout,
        )

    def _websocket_ssl(self) -> ssl.SSLContext:
        if self._ssl is not None:
            return self._ssl
        context = ssl.create_default_context()
        if self._verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def exec(
        self, vm: str, argv: list[str], *, stdin: str | None = None, timeout_s: float = 60.0
    ) -> ExecOutput:
        body = ExecRequest(argv=argv, stdin=stdin, timeout_s=timeout_s)
        response = self._request(
            "POST", f"/vms/{vm}/exec", content=body.model_dump_json(), timeout=timeout_s + 30
        )
        return ExecOutput.model_validate_json(response.content)

    # -- disks and DVD: live on a running VM --------------------------------------------------

    def disks(self, vm: str) -> VmDisks:
        """The VM's disks (image headers; I/O counters while it runs) and DVD drive."""
        return self._get(f"/vms/{vm}/disks", VmDisks)

    def add_disk(self, vm: str, disk: DiskAdd) -> DiskSlot:
        """Add-VMHardDiskDrive; the answer says which slot the disk took."""
        response = self._request("POST", f"/vms/{vm}/disks", content=disk.model_dump_json())
        return DiskSlot.model_validate_json(response.content)

    def remove_disk(self, vm: str, controller: int, slot: int) -> DiskSlot:
        """Remove-VMHardDiskDrive (the file stays); the answer is the disk removed."""
        response = self._request("DELETE", f"/vms/{vm}/disks/{controller}/{slot}")
        return DiskSlot.model_validate_json(response.content)

    def set_disk_qos(self, vm: str, controller: int, slot: int, qos: DiskQos) -> DiskSlot:
        """Storage QoS: a limit left None stays, 0 lifts it."""
        content = qos.model_dump_json(exclude_none=True)
        response = self._request("PATCH", f"/vms/{vm}/disks/{controller}/{slot}", content=content)
        return DiskSlot.model_validate_json(response.content)

    def insert_dvd(self, vm: str, iso: str | Path) -> DvdDrive:
        body = DvdInsert(path=str(iso)).model_dump_json()
        return DvdDrive.model_validate_json(
            self._request("PUT", f"/vms/{vm}/dvd", content=body).content
        )

    def eject_dvd(self, vm: str) -> DvdDrive:
        return DvdDrive.model_validate_json(self._request("DELETE", f"/vms/{vm}/dvd").content)

    # -- export and import ------------------------------------------------------------------

    def export_vm(self, vm: str, path: str | Path, *, wait: bool = False) -> Job:
        """Export-VM to ``path`` (a new folder inside a storage root)."""
        body = ExportRequest(path=str(path)).model_dump_json()
        job = Job.model_validate_json(
            self._request("POST", f"/vms/{vm}/export", content=body).content
        )
        return self.wait_job(job.id) if wait else job

    def compare_vm(
        self, path: str | Path, mode: ImportMode = ImportMode.REGISTER
    ) -> CompatibilityReport:
        """Compare-VM: what keeps the export at ``path`` from importing here."""
        body = ImportRequest(path=str(path), mode=mode).model_dump_json()
        response = self._request("POST", "/vms/import/report", content=body)
        return CompatibilityReport.model_validate_json(response.content)

    def import_vm(
        self, path: str | Path, mode: ImportMode = ImportMode.REGISTER, *, wait: bool = False
    ) -> Job:
        """Import-VM: register in place, copy, or copy with a new id."""
        body = ImportRequest(path=str(path), mode=mode).model_dump_json()
        job = Job.model_validate_json(self._request("POST", "/vms/import", content=body).content)
        return self.wait_job(job.id) if wait else job

    # -- checkpoints: name is a checkpoint's name or id ----------------------------------------

    def checkpoints(self, vm: str) -> CheckpointTree:
        """The VM's checkpoint tree; ``current`` is the checkpoint "Now" hangs from."""
        return self._get(f"/vms/{vm}/checkpoints", CheckpointTree)

    def checkpoint(self, vm: str, name: str) -> Checkpoint:
        return self._get(_checkpoint_url(vm, name), Checkpoint)

    def create_checkpoint(
        self,
        vm: str,
        name: str | None = None,
        kind: CheckpointType = CheckpointType.STANDARD,
        *,
        wait: bool = False,
    ) -> CheckpointJob:
        """Checkpoint-VM; the job names the checkpoint (Hyper-V's "VM - (date time)" unnamed)."""
        body = CheckpointCreate(name=name, type=kind).model_dump_json()
        response = self._request("POST", f"/vms/{vm}/checkpoints", content=body)
        job = CheckpointJob.model_validate_json(response.content)
        if not wait:
            return job
        return CheckpointJob(**self.wait_job(job.id).model_dump(), checkpoint=job.checkpoint)

    def apply_checkpoint(self, vm: str, name: str, *, wait: bool = False) -> Job:
        """Restore-VMCheckpoint: the VM's current state is discarded."""
        return self._job("POST", f"{_checkpoint_url(vm, name)}/apply", wait)

    def remove_checkpoint(
        self, vm: str, name: str, *, subtree: bool = False, wait: bool = False
    ) -> Job:
        params = {"subtree": "true"} if subtree else None
        return self._job("DELETE", _checkpoint_url(vm, name), wait, params=params)

    def rename_checkpoint(self, vm: str, name: str, new_name: str) -> Checkpoint:
        body = CheckpointRename(name=new_name).model_dump_json()
        response = self._request("PATCH", _checkpoint_url(vm, name), content=body)
        return Checkpoint.model_validate_json(response.content)

    def export_checkpoint(self, vm: str, name: str, path: str | Path, *, wait: bool = False) -> Job:
        """Export-VMCheckpoint to ``path`` (a new folder inside a storage root)."""
        body = ExportRequest(path=str(path)).model_dump_json()
        return self._job("POST", f"{_checkpoint_url(vm, name)}/export", wait, content=body)

    def _job(self, method: str, url: str, wait: bool, **kwargs: Any) -> Job:
        job = Job.model_validate_json(self._request(method, url, **kwargs).content)
        return self.wait_job(job.id) if wait else job

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        return TypeAdapter(list[Job]).validate_json(self._request("GET", "/jobs").content)

    def job(self, job_id: str) -> Job:
        return self._get(f"/jobs/{job_id}", Job)

    def cancel_job(self, job_id: str) -> Job:
        return Job.model_validate_json(self._request("DELETE", f"/jobs/{job_id}").content)

    def wait_job(
        self,
        job_id: str,
        timeout_s: float = 600.0,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job ends, calling ``on_progress`` with each state seen.

        :raises PyhvError: the error the job failed with (same class as a direct call's).
        :raises ApiError: when it was cancelled or is still running after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while (job := self.job(job_id)).state == JobState.RUNNING:
            if on_progress is not None:
                on_progress(job)
            if time.monotonic() > deadline:
                raise ApiError(f"job {job_id} ({job.operation}) still runs after {timeout_s:g} s")
            time.sleep(JOB_POLL_S)
        if job.state == JobState.FAILED and job.error is not None:
            raise error_class(job.error.code)(job.error.detail)
        if job.state == JobState.CANCELLED:
            raise ApiError(f"job {job_id} ({job.operation}) was cancelled")
        return job

    # -- events -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def events(self, last_event_id: int | None = None) -> Iterator[Iterator[Event]]:
        """The event stream, open once this returns (nothing published afterwards is missed).

        :raises ApiError: when pyhvd refuses the stream.
        """
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        with (
            self._connection_errors(),
            self._http.stream("GET", "/events", headers=headers, timeout=timeout) as response,
        ):
            if not response.is_success:
                response.read()
                raise_for_problem(response)
            lines = response.iter_lines()
            for line in lines:
                if line.startswith(":"):
                    break
            yield parse_sse(lines)


def _checkpoint_url(vm: str, name: str) -> str:
    return f"/vms/{vm}/checkpoints/{quote(name, safe='')}"


def start_command(socket_path: Path) -> str:
    """How to start a pyhvd that listens at ``socket_path``, for this environment's home."""
    paths = HomePaths()
    command = f"pyhvd --home {paths.home}"
    if socket_path != default_socket(paths):
        command += f" --socket {socket_path}"
    return command


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Events from server-sent-event lines; comments and unknown fields are skipped."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event.model_validate(json.loads("\n".join(data)))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


__all__ = ["PyhvClient", "default_socket", "parse_sse", "raise_for_problem", "start_command"]
