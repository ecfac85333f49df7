"""What route handlers receive through FastAPI's dependencies: the services and the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from pyhv.service.auth import Authenticator, Principal, Right, check_right
from pyhv.service.events import EventBus
from pyhv.service.jobs import Jobs
from pyhv.service.manager import VmManager
from pyhv.service.porting import VmPorter


@dataclass(frozen=True)
class Services:
    manager: VmManager
    porter: VmPorter
    jobs: Jobs
    events: EventBus


# Dependencies and handlers are all ``async def``: FastAPI would run plain functions in a
# thread pool, and the services are not thread-safe (nor need threads: nothing here blocks).
async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def needs(right: Right) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the request through only for callers holding ``right``.

    :raises AuthenticationError: (401) no or unknown credentials.
    :raises PermissionDenied: (403) a role without the right.
    """

    async def check(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        principal = authenticator.authenticate(authorization)
        check_right(principal, right)
        return principal

    return check


Svc = Annotated[Services, Depends(services)]
Reader = Depends(needs(Right.READ))
Operator = Depends(needs(Right.OPERATE))
Admin = Depends(needs(Right.ADMIN))
