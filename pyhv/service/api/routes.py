"""The URL table: every resource's router, mounted on the app."""

from __future__ import annotations

from fastapi import FastAPI

from pyhv.service.api import checkpoints, console, disks, events, host, jobs, transfer, vms

# transfer, checkpoints and disks before vms: their fixed paths must win over "/vms/{vm}/{op}".
ROUTERS = (
    host.router,
    transfer.router,
    checkpoints.router,
    disks.router,
    console.router,
    vms.router,
    jobs.router,
    events.router,
)


def mount(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
