"""The hottest reads, ``GET /vms`` and ``GET /vms/{vm}``, answered in front of FastAPI.

Both bodies are bytes the manager keeps pre-encoded, so FastAPI's middleware stack, routing
(every router tried in turn) and dependency resolution cost several times the answer itself.
This pure ASGI app is each listener's outermost layer: it matches the two paths, checks the
caller exactly as the routes' ``Reader`` dependency does, and sends the same two ASGI messages
as the routes in :mod:`pyhv.service.api.vms`. Every other request, and every one these would
refuse (no or unknown credentials, no right, no such VM), goes on to the full app, which
answers it as before: same problem+json, same status.
"""

from __future__ import annotations

from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyhv.errors import PyhvError
from pyhv.service.auth import Authenticator, Right, check_right

_LIST = "/vms"
_ONE = "/vms/"
_JSON = (b"content-type", b"application/json")


class CachedViews(Protocol):
    """What the layer reads: the manager's pre-encoded answers."""

    def list_json(self) -> tuple[str, bytes]: ...

    def get_json(self, ref: str) -> bytes: ...


class CachedReads:
    def __init__(self, app: ASGIApp, views: CachedViews, authenticator: Authenticator) -> None:
        self.app = app
        self._views = views
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._answer(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
        else:
            await send(answer[0])
            await send(answer[1])

    def _answer(self, scope: Scope) -> tuple[Message, Message] | None:
        """The response start and body of a cached read that succeeds; None for any other.

        Paths as the routes match them (pyhvd serves the app at the root: no root_path).
        """
        path: str = scope["path"]
        vm = path.removeprefix(_ONE)
        if scope["method"] != "GET" or (path != _LIST and (vm == path or not vm or "/" in vm)):
            return None
        # The first of repeated headers, as the routes' Header() parameters take it.
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"if-none-match" and if_none_match is None:
                if_none_match = value.decode("latin-1")
        try:
            check_right(self._authenticator.authenticate(authorization), Right.READ)
            if path == _LIST:
                etag, body = self._views.list_json()
                if if_none_match == etag:
                    return _messages(304, [(b"etag", etag.encode("latin-1"))], b"")
                headers = [(b"etag", etag.encode("latin-1")), _length(body), _JSON]
                return _messages(200, headers, body)
            body = self._views.get_json(vm)
        except PyhvError:
            return None  # the routes raise it again, through the app's error handlers
        return _messages(200, [_length(body), _JSON], body)


def _length(body: bytes) -> tuple[bytes, bytes]:
    return (b"content-length", b"%d" % len(body))


def _messages(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[Message, Message]:
    """As starlette's ``Response`` sends them, headers in its order (given, length, type)."""
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )
