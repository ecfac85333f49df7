"""The API's error handlers, built on the table in :mod:`pyhv.service.error_codes`.

Every error body is problem+json (RFC 9457) with ``detail`` = the same one line the CLI prints,
and ``code`` = a stable name that ``pyhv.client`` maps back to the error class.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from pyhv import errors
from pyhv.service.error_codes import (
    ERRORS,
    HTTP_CODES,
    INTERNAL,
    INVALID_REQUEST,
    status_and_code,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """The body of every error response (RFC 9457), for the OpenAPI schema."""

    type: str
    title: str
    status: int
    detail: str
    code: str


PROBLEM_STATUSES = sorted({status for _, status, _ in ERRORS} | {404, 405, 422})


def openapi_responses() -> dict[int | str, dict[str, Any]]:
    """Every route may answer any of the table's statuses with a problem body."""
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {status: {"description": "an error", "content": content} for status in PROBLEM_STATUSES}


def problem(status: int, code: str, detail: str) -> dict[str, Any]:
    return {
        "type": f"urn:pyhv:error:{code}",
        "title": code.replace("-", " "),
        "status": status,
        "detail": " ".join(detail.split()),
        "code": code,
    }


def problem_response(status: int, code: str, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        problem(status, code, detail), status, headers=headers, media_type=PROBLEM_JSON
    )


_VALUE_ERROR = "Value error, "


def describe_validation(exc: RequestValidationError) -> str:
    """One line about the first bad field; pyhv's own validators' messages are kept verbatim.

    ``body.processor_count: Input should be a valid integer`` or
    ``processor count 300 exceeds the limit of 240 per VM``.
    """
    errs = exc.errors()
    if not errs:
        return "invalid request"
    first = errs[0]
    msg = str(first.get("msg", "invalid value"))
    if msg.startswith(_VALUE_ERROR):
        line = msg.removeprefix(_VALUE_ERROR)
    else:
        where = ".".join(str(p) for p in first.get("loc", ()))
        line = f"{where}: {msg}"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return line + more


async def _pyhv_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.PyhvError)
    status, code = status_and_code(exc)
    if status >= 500:
        log.error("%s: %s", code, exc, exc_info=exc)
    return problem_response(status, code, str(exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, INVALID_REQUEST, describe_validation(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, INVALID_REQUEST)
    detail = str(exc.detail)
    if exc.status_code in HTTP_CODES:
        detail = f"{detail}: {request.method} {request.url.path}; the API is in /openapi.json"
    return problem_response(exc.status_code, code, detail)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    detail = f"internal error ({type(exc).__name__}): see pyhvd's log"
    return problem_response(500, INTERNAL, detail)


def install(app: FastAPI) -> None:
    """Error handlers, plus the Problem schema the routes' error responses refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = generate().setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema()
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(errors.PyhvError, _pyhv_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
