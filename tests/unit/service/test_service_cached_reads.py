"""The ASGI app in front of FastAPI answers ``GET /vms`` and ``GET /vms/{vm}`` byte for byte
as the routes do, for every caller and every outcome, and passes everything else through."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.types import ASGIApp

from pyhv.errors import NotFoundError
from pyhv.service.api.cached_reads import CachedReads
from pyhv.service.api.deps import Services
from pyhv.service.app import build_app, listener_app
from pyhv.service.auth import Authenticator, LocalAuthenticator, TokenAuthenticator

ETAG = '"abc-7"'


class FakeManager:
    def list_json(self) -> tuple[str, bytes]:
        return ETAG, b'[{"name":"web"}]'

    def get_json(self, ref: str) -> bytes:
        if ref != "web":
            raise NotFoundError(f"no VM named {ref!r}: see GET /vms or `pyhv vm list`")
        return b'{"config":{"name":"web"}}'


Headers = list[tuple[str, str]]


def call(app: ASGIApp, method: str, path: str, headers: Headers) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"x")] + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": None,
        "server": None,
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def authenticators(tmp_path: Path) -> list[Authenticator]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "r", "role": "reader", "token": "rt"}]}))
    return [LocalAuthenticator(), TokenAuthenticator(tokens)]


REQUESTS: list[tuple[str, str, Headers]] = [
    ("GET", "/vms", []),
    ("GET", "/vms", [("If-None-Match", ETAG)]),
    ("GET", "/vms", [("If-None-Match", '"old"')]),
    ("GET", "/vms/web", []),
    ("GET", "/vms/nope", []),
    ("GET", "/vms/", []),
    ("GET", "/vmsx", []),
    ("HEAD", "/vms", []),
    ("PUT", "/vms/web", []),
    ("GET", "/vms", [("Authorization", "Bearer rt"), ("If-None-Match", ETAG)]),
    ("GET", "/vms/web", [("Authorization", "bearer rt")]),
    ("GET", "/vms/nope", [("Authorization", "Bearer rt")]),
    ("GET", "/vms/web", [("Authorization", "Bearer wrong")]),
    # Repeated headers: the first counts, on both paths.
    ("GET", "/vms/web", [("Authorization", "Bearer wrong"), ("Authorization", "Bearer rt")]),
    ("GET", "/vms/web", [("Authorization", "Bearer rt"), ("Authorization", "Bearer wrong")]),
    ("GET", "/vms", [("If-None-Match", ETAG), ("If-None-Match", '"old"')]),
    ("GET", "/vms", [("If-None-Match", '"old"'), ("If-None-Match", ETAG)]),
]


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS)
def test_same_answer_as_the_routes(
    tmp_path: Path, method: str, path: str, headers: Headers
) -> None:
    services = cast(Services, SimpleNamespace(manager=FakeManager()))
    for authenticator in authenticators(tmp_path):
        fast = listener_app(services, authenticator)
        routes_only = build_app(services, authenticator)
        assert call(fast, method, path, headers) == call(routes_only, method, path, headers)


def test_reads_skip_the_routes(tmp_path: Path) -> None:
    services = cast(Services, SimpleNamespace(manager=FakeManager()))
    routes_only = build_app(services, LocalAuthenticator())
    routes_only.router.routes.clear()  # only the layer in front can answer now
    app = CachedReads(routes_only, services.manager, LocalAuthenticator())
    assert call(app, "GET", "/vms/web", [])[0]["status"] == 200
    assert call(app, "GET", "/vms", [("If-None-Match", ETAG)])[0]["status"] == 304
    assert call(app, "GET", "/vms/nope", [])[0]["status"] == 404  # the router's own 404
