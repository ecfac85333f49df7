"""``POST /vms/{vm}/checkpoints`` checks the name before it accepts the job."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from pyhv.service.api.deps import Services
from pyhv.service.app import build_app
from pyhv.service.auth import LocalAuthenticator


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
