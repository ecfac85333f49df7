"""``/vms/{vm}/checkpoints``: names are checked before a job is accepted, a name may hold a
``/``, and an export folder that cannot be used is refused up front."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from pyhv.checkpoints import Checkpoint
from pyhv.errors import ConflictError, NotFoundError
from pyhv.service.api.deps import Services
from pyhv.service.app import build_app
from pyhv.service.auth import LocalAuthenticator
from pyhv.service.confine import StorageRoots


class NoJobs:
    def submit_exclusive(self, *args: object) -> None:
        raise AssertionError("a job was submitted for a name that is refused")


def post(body: dict[str, Any]) -> httpx.Response:
    entry = SimpleNamespace(config=SimpleNamespace(id="vm-id", name="web"))
    manager = SimpleNamespace(registry=SimpleNamespace(get=lambda ref: entry), checkpoints=None)
    manager.submit_exclusive = NoJobs().submit_exclusive
    app = build_app(cast(Services, SimpleNamespace(manager=manager)), LocalAuthenticator())

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pyhvd") as client:
            return await client.post("/vms/web/checkpoints", json=body)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("", "a checkpoint name must not be empty"),
        ("  ", "a checkpoint name must not be empty"),
        ("a\nb", "checkpoint name 'a\\nb' must not contain control characters"),
        ("x" * 300, "checkpoint name is 300 characters, over 100"),
    ],
)
def test_a_bad_name_is_refused_up_front(name: str, detail: str) -> None:
    """An empty name was accepted (202) and the job then failed."""
    answer = post({"name": name})
    assert answer.status_code == 400
    assert answer.json()["detail"] == detail


class OneCheckpoint:
    """The VM's checkpoints, as far as the routes need them: one, named ``a/b``."""

    def __init__(self, memory_state: str | None = None) -> None:
        self.asked: list[str] = []
        self.memory_state = memory_state

    def get(self, vm_id: str, name: str) -> tuple[object, Checkpoint]:
        self.asked.append(name)
        if name != "a/b":
            raise NotFoundError(f"no checkpoint named {name!r}")
        node = Checkpoint(
            id="id-1",
            name=name,
            parent=None,
            created=T0,
            disks={},
            memory_state=self.memory_state,
            config={},
        )
        return None, node

    def _not_run(self, *args: object) -> None:
        raise AssertionError("the VM's hold refuses every job here")

    apply = remove = rename = export = _not_run


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def send(
    method: str, url: str, roots: Path, memory_state: str | None = None, **kwargs: Any
) -> tuple[httpx.Response, list[str]]:
    """A request to pyhvd's app over a VM ``web`` that holds no job; a job is refused as
    busy, which shows the request got as far as submitting it."""
    entry = SimpleNamespace(config=SimpleNamespace(id="vm-id", name="web"))
    checkpoints = OneCheckpoint(memory_state)

    @asynccontextmanager
    async def holding(ref: str) -> AsyncIterator[object]:
        raise ConflictError("VM 'web' is busy")
        yield entry

    manager = SimpleNamespace(
        registry=SimpleNamespace(get=lambda ref: entry),
        checkpoints=checkpoints,
        roots=StorageRoots([roots]),
        holding=holding,
    )
    app = build_app(cast(Services, SimpleNamespace(manager=manager)), LocalAuthenticator())

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pyhvd") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go()), checkpoints.asked


@pytest.mark.parametrize(
    ("method", "suffix", "status"),
    [("GET", "", 200), ("POST", "/apply", 409), ("DELETE", "", 409), ("PATCH", "", 409)],
)
def test_a_name_with_a_slash_reaches_its_checkpoint(
    tmp_path: Path, method: str, suffix: str, status: int
) -> None:
    """``pyhv checkpoint new web --name a/b`` created the checkpoint, then failed (exit 2):
    ``/vms/web/checkpoints/a%2Fb`` matched no route, nor could it be shown or removed."""
    body = {"json": {"name": "c"}} if method == "PATCH" else {}
    answer, asked = send(method, f"/vms/web/checkpoints/a%2Fb{suffix}", tmp_path, **body)
    assert answer.status_code == status, answer.text
    if method == "GET":
        assert answer.json()["name"] == "a/b"
    elif method != "PATCH":  # renaming finds the checkpoint inside the VM's hold
        assert asked == ["a/b"]


def test_an_export_into_an_existing_folder_is_refused_before_a_job(tmp_path: Path) -> None:
    """It was accepted (202) and the job then failed, unlike Export-VM's."""
    (tmp_path / "taken").mkdir()
    (tmp_path / "file").touch()
    url = "/vms/web/checkpoints/a%2Fb/export"
    taken, _ = send("POST", url, tmp_path, json={"path": str(tmp_path / "taken")})
    assert taken.status_code == 409
    assert taken.json()["detail"] == f"{tmp_path / 'taken'} exists: export into a new folder"
    under_file, _ = send("POST", url, tmp_path, json={"path": str(tmp_path / "file" / "x")})
    assert under_file.status_code == 400
    assert under_file.json()["detail"].endswith(f"{tmp_path / 'file'} is not a folder")
    fine, _ = send("POST", url, tmp_path, json={"path": str(tmp_path / "new")})
    assert fine.status_code == 409  # accepted as far as the job, which the VM's hold refuses


@pytest.mark.parametrize(("suffix", "body"), [("/apply", None), ("/export", {"path": "new"})])
def test_a_checkpoint_without_its_memory_file_is_refused_before_a_job(
    tmp_path: Path, suffix: str, body: dict[str, str] | None
) -> None:
    """Applied, it turned the VM off and left a journal that failed at every recovery."""
    memory = str(tmp_path / "C1.vmrs")
    if body is not None:
        body = {"path": str(tmp_path / body["path"])}
    url = f"/vms/web/checkpoints/a%2Fb{suffix}"
    answer, _ = send("POST", url, tmp_path, memory_state=memory, json=body)
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith(f"checkpoint 'a/b' lost its memory file {memory}")
