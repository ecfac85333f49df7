"""Turn pydantic's multi-line ``ValidationError`` into the one-line ``ConfigError`` users read."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pyhv.errors import ConfigError
from pyhv.model.vm import VmConfig

_VALUE_ERROR_PREFIX = "Value error, "


def config_error(err: ValidationError, *, source: str | None = None) -> ConfigError:
    """The first problem, as one line; our validators' messages are kept word for word.

    ``source`` (a file name) prefixes the line when the config came from a file.
    """
    first = err.errors()[0]
    message = str(first["msg"])
    if message.startswith(_VALUE_ERROR_PREFIX):
        message = message[len(_VALUE_ERROR_PREFIX) :]
    else:
        where = ".".join(str(part) for part in first["loc"])
        got = first.get("input")
        shown = f" (got {got!r})" if first["type"] != "missing" and _short(got) else ""
        message = f"{where}: {message[:1].lower()}{message[1:]}{shown}" if where else message
    # Field names come from the input and may hold line breaks; the error stays one line.
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    more = len(err.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(f"{source}: {message}" if source else message)


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 40


def make_vm_config(**fields: Any) -> VmConfig:
    """Build a ``VmConfig`` from user input.

    :raises ConfigError: the first invalid field, in one line naming the limit.
    """
    try:
        return VmConfig.model_validate(fields)
    except ValidationError as e:
        raise config_error(e) from None


def parse_vm_config(text: str | bytes, *, source: str | None = None) -> VmConfig:
    """Read a ``vm.json``.

    :raises ConfigError: when the file is not valid JSON or not a valid configuration.
    """
    try:
        return VmConfig.model_validate_json(text)
    except ValidationError as e:
        raise config_error(e, source=source) from None
