"""schemathesis against pyhvd's own OpenAPI schema, over the unix socket: no 5xx, and every
answer (status, content type, body) is one the schema documents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from pyhvd_harness import Pyhvd

from pyhv.model import VmConfig

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 40
# The event stream never ends, and power operations would start real QEMUs.
SKIPPED = {("GET", "/events"), ("POST", "/vms/{vm}/{op}")}


def to_httpx(kwargs: dict[str, Any]) -> dict[str, Any]:
    """schemathesis speaks requests' keywords; httpx wants raw bodies as ``content``."""
    out = {k: v for k, v in kwargs.items() if k in ("method", "url", "headers", "params", "json")}
    if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
        out["content"] = kwargs["data"]
    elif "data" in kwargs:
        out["data"] = kwargs["data"]
    return out


def test_schema_holds_under_generated_requests(pyhvd: Pyhvd) -> None:
    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(pyhvd.socket)), timeout=30)
    pyhvd.clients.append(pyhvd.client())
    pyhvd.clients[-1].create_vm(VmConfig(name="fuzz-target", memory_startup_mib=64))
    raw = http.get("http://pyhvd/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://pyhvd")
            response = http.request(**to_httpx(kwargs))
            case.validate_response(response, checks=CHECKS)

        run()
        tested += 1
    assert tested >= 8
    http.close()
