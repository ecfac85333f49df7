"""The hottest reads, ``GET /vms`` and ``GET /vms/{vm}``, answered in front of FastAPI.

Both bodies are bytes the manager keeps pre-encoded, so FastAPI's routing (every router tried
in turn) and dependency resolution cost about ten times the answer itself. This pure ASGI layer
matches the two paths, checks the caller exactly as the routes' ``Reader`` dependency does, and
sends the same response as the routes in :mod:`pyhv.service.api.vms`. Every other request, and
every one these would refuse (no or unknown credentials, no right, no such VM), goes on to the
full app, which answers it as before: same problem+json, same status.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pyhv.errors import PyhvError
from pyhv.service.api import vms
from pyhv.service.api.deps import Services
from pyhv.service.auth import Authenticator, Right, check_right

_LIST = "/vms"
_ONE = "/vms/"


class CachedReads:
    def __init__(self, app: ASGIApp, services: Services, authenticator: Authenticator) -> None:
        self.app = app
        self._manager = services.manager
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._answer(scope) if scope["type"] == "http" else None
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _answer(self, scope: Scope) -> Response | None:
        """The response to a cached read that succeeds; None for any other request.

        Paths as the routes match them (pyhvd serves the app at the root: no root_path).
        """
        path: str = scope["path"]
        vm = path.removeprefix(_ONE)
        if scope["method"] != "GET" or (path != _LIST and (vm == path or not vm or "/" in vm)):
            return None
        headers = Headers(scope=scope)
        try:
            check_right(self._authenticator.authenticate(headers.get("authorization")), Right.READ)
            if path == _LIST:
                return vms.listing(self._manager, headers.get("if-none-match"))
            return vms.one_vm(self._manager, vm)
        except PyhvError:
            return None  # the routes raise it again, through the app's error handlers
