"""The names of the power operations, apart from :mod:`pyhv.service.commands`: the ``pyhv``
command and the client name them without loading pyhvd's models."""

from __future__ import annotations

from enum import StrEnum


class Power(StrEnum):
    """The power operations of the API, each a path segment of ``POST /vms/{id}/<op>``."""

    START = "start"
    STOP = "stop"
    TURN_OFF = "turn-off"
    SAVE = "save"
    PAUSE = "pause"
    RESUME = "resume"
    RESTART = "restart"
