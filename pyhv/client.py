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
import http.client
import json
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from pyhv.errors import ApiError, NotFoundError, UsageError
from pyhv.http_lite import ConnectFailed, HttpTransport, Response
from pyhv.paths import HomePaths
from pyhv.service import default_socket
from pyhv.service.error_codes import error_class

if TYPE_CHECKING:
    from pydantic import BaseModel
    from websockets.sync.client import ClientConnection

    from pyhv.checkpoints import Checkpoint, CheckpointTree, CheckpointType
    from pyhv.model import DvdDrive, VmConfig
    from pyhv.service.events import Event
    from pyhv.service.jobs import Job
    from pyhv.service.operations import Power
    from pyhv.service.policies import ProcessorPolicy
    from pyhv.service.schemas import (
        CheckpointJob,
        CompatibilityReport,
        DiskAdd,
        DiskQos,
        DiskSlot,
        ExecOutput,
        HostInfo,
        ImportMode,
        VmDisks,
        VmPatch,
        VmSample,
        VmSummary,
        VmView,
    )

    M = TypeVar("M", bound=BaseModel)

JOB_POLL_S = 0.1
RUNNING = "Running"  # JobState.RUNNING, without importing the job models
_STREAM_ENDED: dict[str, Any] = {}


def raise_for_problem(response: Response) -> None:
    """:raises PyhvError: the class named by the problem's ``code``, with its ``detail``."""
    if response.is_success:
        return
    try:
        body = json.loads(response.body)
        code, detail = str(body["code"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.body.decode(errors="replace").split())[:200]
        raise ApiError(f"pyhvd answered {response.status}: {text}") from None
    raise error_class(code)(detail)


class PyhvClient:
    """Models are imported by the methods that return them: a caller pays only for what it
    uses (the ``pyhv`` command starts in a fraction of the time)."""

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
        if base_url is not None:
            self.where = base_url
            tls = self._tls() if base_url.startswith("https:") else None
            self._http = HttpTransport(
                base_url=base_url, headers=self._headers, timeout=timeout, ssl_context=tls
            )
        else:
            self.socket_path = Path(socket_path) if socket_path is not None else default_socket()
            self.where = str(self.socket_path)
            self._http = HttpTransport(unix_path=self.where, headers=self._headers, timeout=timeout)

    def _tls(self) -> ssl.SSLContext:
        if isinstance(self._verify, str):
            return ssl.create_default_context(cafile=self._verify)
        context = ssl.create_default_context()
        if self._verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def close(self) -> None:
        """Nothing stays open between requests; kept for ``with`` and older callers."""

    def __enter__(self) -> PyhvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def not_answering(self, err: Exception) -> ApiError:
        """The error for a pyhvd that cannot be reached, saying how to start it."""
        if self.socket_path is None:
            cause = err.__cause__ or err
            return ApiError(
                f"pyhvd does not answer at {self.where} ({type(cause).__name__}): "
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
        except ConnectFailed as err:
            raise self.not_answering(err) from err
        except TimeoutError as err:
            raise ApiError(f"pyhvd at {self.where} did not answer in time: {err}") from err
        except (OSError, http.client.HTTPException) as err:
            raise ApiError(
                f"the connection to pyhvd at {self.where} failed ({type(err).__name__}): {err}"
            ) from err

    def _request(self, method: str, url: str, **kwargs: Any) -> Response:
        if "content" in kwargs:
            kwargs["headers"] = {"Content-Type": "application/json"}
        with self._connection_errors():
            response = self._http.request(method, url, **kwargs)
        raise_for_problem(response)
        return response

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return json.loads(self._request(method, url, **kwargs).body)

    def _get(self, url: str, model: type[M]) -> M:
        return model.model_validate_json(self._request("GET", url).body)

    def _job(self, method: str, url: str, wait: bool, **kwargs: Any) -> Job:
        from pyhv.service.jobs import Job

        job = Job.model_validate_json(self._request(method, url, **kwargs).body)
        return self.wait_job(job.id) if wait else job

    # -- host and VMs ---------------------------------------------------------------------

    def host(self) -> HostInfo:
        from pyhv.service.schemas import HostInfo

        return self._get("/host", HostInfo)

    def stop_all_vms(self, *, wait: bool = False) -> Job:
        """Carry out every running VM's automatic stop action (before a host shutdown)."""
        return self._job("POST", "/host/stop-vms", wait)

    def list_vms(self) -> list[VmSummary]:
        from pydantic import TypeAdapter

        from pyhv.service.schemas import VmSummary

        body = self._request("GET", "/vms").body
        return TypeAdapter(list[VmSummary]).validate_json(body)

    def get_vm(self, vm: str) -> VmView:
        """``vm`` is an id or a name."""
        from pyhv.service.schemas import VmView

        return self._get(_vm_url(vm), VmView)

    def vm_state(self, vm: str) -> VmStateLine:
        """The VM's state as one line shows it, read without building the VM's models."""
        status = self._json("GET", _vm_url(vm))["status"]
        return VmStateLine(str(status["state"]), bool(status.get("critical")), status.get("reason"))

    def create_vm(self, config: VmConfig, policy: ProcessorPolicy | None = None) -> VmView:
        """Register a VM; pyhvd validates it (the config is sent as it is)."""
        from pyhv.service.policies import ProcessorPolicy
        from pyhv.service.schemas import VmView

        body = config.model_dump(mode="json", warnings=False)
        body["policy"] = (policy or ProcessorPolicy()).model_dump(mode="json")
        response = self._request("POST", "/vms", content=json.dumps(body))
        return VmView.model_validate_json(response.body)

    def update_vm(self, vm: str, patch: VmPatch) -> VmView:
        from pyhv.service.schemas import VmView

        content = patch.model_dump_json(exclude_none=True)
        return VmView.model_validate_json(self._request("PATCH", _vm_url(vm), content=content).body)

    def remove_vm(self, vm: str) -> None:
        self._request("DELETE", _vm_url(vm))

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
        from pyhv.service.jobs import Job

        job = self.power_job(
            vm, op, ready_timeout_s=ready_timeout_s, shutdown_timeout_s=shutdown_timeout_s
        )
        return self.wait_job(job["id"]) if wait else Job.model_validate(job)

    def power_job(
        self,
        vm: str,
        op: Power | str,
        *,
        ready_timeout_s: float | None = None,
        shutdown_timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """:meth:`power` without the job's model: the job as pyhvd sent it (JSON)."""
        given = {"ready_timeout_s": ready_timeout_s, "shutdown_timeout_s": shutdown_timeout_s}
        params = {k: v for k, v in given.items() if v is not None}
        job: dict[str, Any] = self._json("POST", f"{_vm_url(vm)}/{op}", params=params)
        return job

    def start(self, vm: str, *, wait: bool = False, ready_timeout_s: float | None = None) -> Job:
        return self.power(vm, "start", wait=wait, ready_timeout_s=ready_timeout_s)

    def stop(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, "stop", wait=wait)

    def turn_off(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, "turn-off", wait=wait)

    def save(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, "save", wait=wait)

    def pause(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, "pause", wait=wait)

    def resume(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, "resume", wait=wait)

    def restart(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, "restart", wait=wait)

    def stats(self, vm: str) -> VmSample:
        from pyhv.service.schemas import VmSample

        return self._get(f"{_vm_url(vm)}/stats", VmSample)

    def console_log(self, vm: str) -> bytes:
        return self._request("GET", f"{_vm_url(vm)}/console/log").body

    @contextlib.contextmanager
    def console(self, vm: str) -> Iterator[ClientConnection]:
        """The VM's serial console as a websocket, binary messages both ways, closed on exit.

        :raises PyhvError: what pyhvd refused the console with (e.g. the VM does not run).
        """
        from websockets.exceptions import ConnectionClosed

        with self._websocket(f"{_vm_url(vm)}/console") as conn:
            try:
                first = json.loads(conn.recv(timeout=self._timeout))
            except (ConnectionClosed, TimeoutError, ValueError) as err:
                raise ApiError(f"pyhvd did not open the console of VM {vm!r}: {err}") from err
            if not first.get("ok"):
                raise error_class(str(first.get("code")))(str(first.get("detail")))
            yield conn

    @contextlib.contextmanager
    def _websocket(self, path: str) -> Iterator[ClientConnection]:
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(self._open_websocket(path))
            except InvalidStatus as err:
                body = bytes(err.response.body or b"")
                raise_for_problem(Response(err.response.status_code, body))
                raise ApiError(f"pyhvd refused the websocket: {err}") from err
            except InvalidHandshake as err:
                raise ApiError(f"pyhvd refused the websocket: {err}") from err
            except (OSError, TimeoutError) as err:
                raise self.not_answering(err) from err
            yield conn

    def _open_websocket(self, path: str) -> ClientConnection:
        """Not connected before it is entered (``with``), with websockets 17 and later."""
        from websockets.sync.client import connect, unix_connect

        if self.socket_path is not None:
            return unix_connect(
                str(self.socket_path), f"ws://pyhvd{path}", open_timeout=self._timeout
            )
        assert self.base_url is not None
        url = "ws" + self.base_url.removeprefix("http").rstrip("/") + path
        return connect(
            url,
            additional_headers=self._headers,
            ssl=self._tls() if url.startswith("wss:") else None,
            open_timeout=self._timeout,
        )

    def exec(
        self, vm: str, argv: list[str], *, stdin: str | None = None, timeout_s: float = 60.0
    ) -> ExecOutput:
        from pyhv.service.schemas import ExecOutput, ExecRequest

        body = ExecRequest(argv=argv, stdin=stdin, timeout_s=timeout_s)
        response = self._request(
            "POST", f"{_vm_url(vm)}/exec", content=body.model_dump_json(), timeout=timeout_s + 30
        )
        return ExecOutput.model_validate_json(response.body)

    # -- disks and DVD: live on a running VM --------------------------------------------------

    def disks(self, vm: str) -> VmDisks:
        """The VM's disks (image headers; I/O counters while it runs) and DVD drive."""
        from pyhv.service.schemas import VmDisks

        return self._get(f"{_vm_url(vm)}/disks", VmDisks)

    def add_disk(self, vm: str, disk: DiskAdd) -> DiskSlot:
        """Add-VMHardDiskDrive; the answer says which slot the disk took."""
        from pyhv.service.schemas import DiskSlot

        response = self._request("POST", f"{_vm_url(vm)}/disks", content=disk.model_dump_json())
        return DiskSlot.model_validate_json(response.body)

    def remove_disk(self, vm: str, controller: int, slot: int) -> DiskSlot:
        """Remove-VMHardDiskDrive (the file stays); the answer is the disk removed."""
        from pyhv.service.schemas import DiskSlot

        response = self._request("DELETE", f"{_vm_url(vm)}/disks/{controller}/{slot}")
        return DiskSlot.model_validate_json(response.body)

    def set_disk_qos(self, vm: str, controller: int, slot: int, qos: DiskQos) -> DiskSlot:
        """Storage QoS: a limit left None stays, 0 lifts it."""
        from pyhv.service.schemas import DiskSlot

        content = qos.model_dump_json(exclude_none=True)
        response = self._request(
            "PATCH", f"{_vm_url(vm)}/disks/{controller}/{slot}", content=content
        )
        return DiskSlot.model_validate_json(response.body)

    def insert_dvd(self, vm: str, iso: str | Path) -> DvdDrive:
        from pyhv.model import DvdDrive
        from pyhv.service.schemas import DvdInsert

        body = DvdInsert(path=str(iso)).model_dump_json()
        return DvdDrive.model_validate_json(
            self._request("PUT", f"{_vm_url(vm)}/dvd", content=body).body
        )

    def eject_dvd(self, vm: str) -> DvdDrive:
        from pyhv.model import DvdDrive

        return DvdDrive.model_validate_json(self._request("DELETE", f"{_vm_url(vm)}/dvd").body)

    # -- export and import ------------------------------------------------------------------

    def export_vm(self, vm: str, path: str | Path, *, wait: bool = False) -> Job:
        """Export-VM to ``path`` (a new folder inside a storage root)."""
        from pyhv.service.schemas import ExportRequest

        body = ExportRequest(path=str(path)).model_dump_json()
        return self._job("POST", f"{_vm_url(vm)}/export", wait, content=body)

    def compare_vm(
        self, path: str | Path, mode: ImportMode | None = None, *, new_name: str | None = None
    ) -> CompatibilityReport:
        """Compare-VM: what keeps the export at ``path`` from importing here (``mode``:
        register in place unless given), under ``new_name`` when given."""
        from pyhv.service.schemas import CompatibilityReport

        body = _import_request(path, mode, new_name)
        response = self._request("POST", "/vms/import/report", content=body)
        return CompatibilityReport.model_validate_json(response.body)

    def import_vm(
        self,
        path: str | Path,
        mode: ImportMode | None = None,
        *,
        new_name: str | None = None,
        wait: bool = False,
    ) -> Job:
        """Import-VM: register in place (unless ``mode`` says), copy, or copy with a new id;
        under ``new_name`` when given (VM names are unique)."""
        body = _import_request(path, mode, new_name)
        return self._job("POST", "/vms/import", wait, content=body)

    # -- checkpoints: name is a checkpoint's name or id ----------------------------------------

    def checkpoints(self, vm: str) -> CheckpointTree:
        """The VM's checkpoint tree; ``current`` is the checkpoint "Now" hangs from."""
        from pyhv.checkpoints import CheckpointTree

        return self._get(f"{_vm_url(vm)}/checkpoints", CheckpointTree)

    def checkpoint(self, vm: str, name: str) -> Checkpoint:
        from pyhv.checkpoints import Checkpoint

        return self._get(_checkpoint_url(vm, name), Checkpoint)

    def create_checkpoint(
        self,
        vm: str,
        name: str | None = None,
        kind: CheckpointType | None = None,
        *,
        wait: bool = False,
    ) -> CheckpointJob:
        """Checkpoint-VM (standard unless ``kind`` says); the job names the checkpoint
        (Hyper-V's "VM - (date time)" unnamed)."""
        from pyhv.checkpoints import CheckpointType
        from pyhv.service.schemas import CheckpointCreate, CheckpointJob

        body = CheckpointCreate(name=name, type=kind or CheckpointType.STANDARD).model_dump_json()
        response = self._request("POST", f"{_vm_url(vm)}/checkpoints", content=body)
        job = CheckpointJob.model_validate_json(response.body)
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
        from pyhv.checkpoints import Checkpoint
        from pyhv.service.schemas import CheckpointRename

        body = CheckpointRename(name=new_name).model_dump_json()
        response = self._request("PATCH", _checkpoint_url(vm, name), content=body)
        return Checkpoint.model_validate_json(response.body)

    def export_checkpoint(self, vm: str, name: str, path: str | Path, *, wait: bool = False) -> Job:
        """Export-VMCheckpoint to ``path`` (a new folder inside a storage root)."""
        from pyhv.service.schemas import ExportRequest

        body = ExportRequest(path=str(path)).model_dump_json()
        return self._job("POST", f"{_checkpoint_url(vm, name)}/export", wait, content=body)

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        from pydantic import TypeAdapter

        from pyhv.service.jobs import Job

        return TypeAdapter(list[Job]).validate_json(self._request("GET", "/jobs").body)

    def job(self, job_id: str) -> Job:
        from pyhv.service.jobs import Job

        return self._get(f"/jobs/{job_id}", Job)

    def cancel_job(self, job_id: str) -> Job:
        from pyhv.service.jobs import Job

        return Job.model_validate_json(self._request("DELETE", f"/jobs/{job_id}").body)

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
        from pyhv.service.jobs import Job

        def progress(job: dict[str, Any]) -> None:
            if on_progress is not None:
                on_progress(Job.model_validate(job))

        return Job.model_validate(self.follow_job(job_id, timeout_s, progress))

    def follow_job(
        self,
        job_id: str,
        timeout_s: float = 600.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """:meth:`wait_job` on the jobs as pyhvd sends them (JSON), building no model.

        Follows the event stream, which carries every change of a job: the end is seen the
        moment pyhvd publishes it, where a poll would see it half a poll later on average and
        cost pyhvd a request per poll (about 0.1 s of its CPU over a VM start). Polls when the
        stream is refused or ends first (a subscriber that fell behind is dropped).
        """
        deadline = time.monotonic() + timeout_s
        with self._connection_errors(), self._http.stream("/events") as response:
            lines = _sse_lines(response if 200 <= response.status < 300 else [])
            for line in lines:
                if line.startswith(":"):  # subscribed: nothing published from now on is missed
                    break
            job = self._json("GET", f"/jobs/{job_id}")
            payloads = _sse_payloads(lines)
            while job["state"] == RUNNING:
                self._job_tick(job, deadline, timeout_s, on_progress)
                event = next(payloads, _STREAM_ENDED)
                if event is _STREAM_ENDED:
                    break
                if event is None:  # a keepalive: look, in case the stream is behind
                    job = self._json("GET", f"/jobs/{job_id}")
                elif event.get("type") == "job" and event["data"].get("id") == job_id:
                    job = event["data"]
        while job["state"] == RUNNING:
            self._job_tick(job, deadline, timeout_s, on_progress)
            time.sleep(JOB_POLL_S)
            job = self._json("GET", f"/jobs/{job_id}")
        error = job.get("error")
        if job["state"] == "Failed" and error is not None:
            raise error_class(str(error["code"]))(str(error["detail"]))
        if job["state"] == "Cancelled":
            raise ApiError(f"job {job_id} ({job['operation']}) was cancelled")
        return dict(job)

    @staticmethod
    def _job_tick(
        job: dict[str, Any],
        deadline: float,
        timeout_s: float,
        on_progress: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        """:raises ApiError: when the job still runs after ``timeout_s``."""
        if on_progress is not None:
            on_progress(job)
        if time.monotonic() > deadline:
            raise ApiError(f"job {job['id']} ({job['operation']}) still runs after {timeout_s:g} s")

    # -- events -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def events(self, last_event_id: int | None = None) -> Iterator[Iterator[Event]]:
        """The event stream, open once this returns (nothing published afterwards is missed).

        :raises ApiError: when pyhvd refuses the stream.
        """
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        with self._connection_errors(), self._http.stream("/events", headers) as response:
            if not 200 <= response.status < 300:
                raise_for_problem(Response(response.status, response.read()))
            lines = _sse_lines(response)
            for line in lines:
                if line.startswith(":"):
                    break
            yield parse_sse(lines)


@dataclass(frozen=True)
class VmStateLine:
    """A VM's state for one line of output; ``display_state`` as VmStatus shows it."""

    state: str
    critical: bool
    reason: str | None

    @property
    def display_state(self) -> str:
        return f"{self.state}-Critical" if self.critical else self.state


def shown_reason(state: str, reason: str | None) -> str | None:
    """The reason worth printing beside a state: none for one that only repeats the state,
    as ``saved`` does for Saved ("Saved (saved)")."""
    if not reason or reason.casefold() == str(state).casefold():
        return None
    return reason


def _vm_url(vm: str) -> str:
    """The VM's path in the API, its name or id quoted: a name may hold any character but
    '/', and one like ``a?b`` or ``%41`` sent as it is would name another VM ('a', 'A').

    :raises UsageError: for an empty name, which would name the VM list instead.
    :raises NotFoundError: for a name with '/', which no VM has (pyhvd would find no route).
    """
    if not vm:
        raise UsageError("VM name must not be empty")
    if "/" in vm:
        raise NotFoundError(f"no VM named {vm!r}: VM names have no '/'")
    return f"/vms/{quote(vm, safe='')}"


def _import_request(path: str | Path, mode: ImportMode | None, new_name: str | None) -> str:
    from pyhv.service.schemas import ImportMode, ImportRequest

    request = ImportRequest(path=str(path), mode=mode or ImportMode.REGISTER, new_name=new_name)
    # No new_name key without one: a pyhvd that predates it refuses unknown keys.
    return request.model_dump_json(exclude_none=True)


def _checkpoint_url(vm: str, name: str) -> str:
    return f"{_vm_url(vm)}/checkpoints/{quote(name, safe='')}"


def start_command(socket_path: Path) -> str:
    """How to start a pyhvd that listens at ``socket_path``, for this environment's home."""
    paths = HomePaths()
    command = f"pyhvd --home {paths.home}"
    if socket_path != default_socket(paths):
        command += f" --socket {socket_path}"
    return command


def _sse_lines(response: Iterable[bytes]) -> Iterator[str]:
    return (raw.decode().rstrip("\r\n") for raw in response)


def _sse_payloads(lines: Iterator[str]) -> Iterator[dict[str, Any] | None]:
    """Each event's JSON as sent, and None for each comment (the keepalives)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield json.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith(":"):
            yield None


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Events from server-sent-event lines; comments and unknown fields are skipped."""
    from pyhv.service.events import Event

    for payload in _sse_payloads(lines):
        if payload is not None:
            yield Event.model_validate(payload)


__all__ = ["PyhvClient", "default_socket", "parse_sse", "raise_for_problem", "start_command"]
