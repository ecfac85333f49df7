"""Builds the FastAPI app of one listener: the shared services plus that listener's authenticator.

pyhvd serves the unix socket and the optional TCP port from two app instances over the same
services, so each listener authenticates its own way while both see one state.
"""

from __future__ import annotations

from fastapi import FastAPI

import pyhv
from pyhv.service.api import errors, routes
from pyhv.service.api.cached_reads import CachedReads
from pyhv.service.api.deps import Services
from pyhv.service.auth import Authenticator


def build_app(services: Services, authenticator: Authenticator) -> FastAPI:
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
    app.add_middleware(CachedReads, services=services, authenticator=authenticator)
    return app
