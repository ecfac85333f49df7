"""Builds the ASGI app of one listener: the shared services plus that listener's authenticator.

pyhvd serves the unix socket and the optional TCP port from two app instances over the same
services, so each listener authenticates its own way while both see one state.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

import pyhv
from pyhv.service.api import errors, routes
from pyhv.service.api.cached_reads import CachedReads
from pyhv.service.api.deps import Services
from pyhv.service.auth import Authenticator


def build_app(services: Services, authenticator: Authenticator) -> FastAPI:
    """The full API: every route, its dependencies and error handlers."""
    app = FastAPI(
        title="pyhvd",
        version=pyhv.__version__,
        description="The management API of pyhv, a Hyper-V-style virtualization host.",
        responses=errors.openapi_responses(),
    )
    app.state.services = services
    app.state.authenticator = authenticator
    errors.install(app)
    routes.mount(app)
    return app


def listener_app(services: Services, authenticator: Authenticator) -> ASGIApp:
    """What a listener serves: the two hottest reads answered before FastAPI sees them."""
    return CachedReads(build_app(services, authenticator), services.manager, authenticator)
