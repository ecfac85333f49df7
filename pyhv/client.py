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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from pyhv.errors import ApiError
from pyhv.model import VmConfig, VmStats
from pyhv.service import default_socket
from pyhv.service.api.errors import error_class
from pyhv.service.commands import Power
from pyhv.service.events import Event
from pyhv.service.jobs import Job, JobState
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import (
    CompatibilityReport,
    ExecOutput,
    ExecRequest,
    ExportRequest,
    HostInfo,
    ImportMode,
    ImportRequest,
    VmPatch,
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
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if base_url is not None:
            self.where = base_url
            self._http = httpx.Client(
                base_url=base_url,
                headers=headers,
                timeout=timeout,
                verify=ssl.create_default_context(cafile=verify)
                if isinstance(verify, str)
                else verify,
            )
        else:
            path = Path(socket_path) if socket_path is not None else default_socket()
            self.where = str(path)
            transport = httpx.HTTPTransport(uds=str(path))
            self._http = httpx.Client(
                transport=transport, base_url="http://pyhvd", headers=headers, timeout=timeout
            )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PyhvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _connection_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as err:
            raise ApiError(
                f"pyhvd does not answer at {self.where} ({type(err).__name__}): "
                "start it with `pyhvd` or `systemctl start pyhvd`"
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

    def power(self, vm: str, op: Power | str, *, wait: bool = False) -> Job:
        """Start a power operation; with ``wait``, return once its job has succeeded.

        :raises PyhvError: what the job failed with, when waiting.
        """
        job = Job.model_validate_json(self._request("POST", f"/vms/{vm}/{Power(op)}").content)
        return self.wait_job(job.id) if wait else job

    def start(self, vm: str, *, wait: bool = False) -> Job:
        return self.power(vm, Power.START, wait=wait)

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

    def stats(self, vm: str) -> VmStats:
        return self._get(f"/vms/{vm}/stats", VmStats)

    def exec(
        self, vm: str, argv: list[str], *, stdin: str | None = None, timeout_s: float = 60.0
    ) -> ExecOutput:
        body = ExecRequest(argv=argv, stdin=stdin, timeout_s=timeout_s)
        response = self._request(
            "POST", f"/vms/{vm}/exec", content=body.model_dump_json(), timeout=timeout_s + 30
        )
        return ExecOutput.model_validate_json(response.content)

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

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        return TypeAdapter(list[Job]).validate_json(self._request("GET", "/jobs").content)

    def job(self, job_id: str) -> Job:
        return self._get(f"/jobs/{job_id}", Job)

    def cancel_job(self, job_id: str) -> Job:
        return Job.model_validate_json(self._request("DELETE", f"/jobs/{job_id}").content)

    def wait_job(self, job_id: str, timeout_s: float = 600.0) -> Job:
        """Poll until the job ends.

        :raises PyhvError: the error the job failed with (same class as a direct call's).
        :raises ApiError: when it was cancelled or is still running after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while (job := self.job(job_id)).state == JobState.RUNNING:
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


__all__ = ["PyhvClient", "default_socket", "parse_sse", "raise_for_problem"]
