"""The client's error mapping and SSE parsing, on canned responses."""

from __future__ import annotations

import httpx
import pytest

from pyhv.client import PyhvClient, parse_sse, raise_for_problem
from pyhv.errors import ApiError, ConflictError, NotFoundError, StateError
from pyhv.service.api.errors import problem


def response(status: int, body: object | None = None, text: str = "") -> httpx.Response:
    if body is not None:
        return httpx.Response(status, json=body)
    return httpx.Response(status, text=text)


def test_problem_codes_become_error_classes() -> None:
    raise_for_problem(response(200, {}))
    with pytest.raises(ConflictError, match=r"^name taken$"):
        raise_for_problem(response(409, problem(409, "conflict", "name taken")))
    with pytest.raises(StateError):
        raise_for_problem(response(409, problem(409, "invalid-state", "it is Off")))
    with pytest.raises(ApiError, match="pyhvd answered 502: bad gateway"):
        raise_for_problem(response(502, text="bad\ngateway"))


def test_parse_sse() -> None:
    lines = [
        ": keepalive",
        "id: 1",
        "event: job",
        'data: {"id":1,"type":"job","time":"2026-01-01T00:00:00Z","data":{"progress":5}}',
        "",
        "",
        "id: 2",
        'data: {"id":2,"type":"vm.state",',
        'data: "time":"2026-01-01T00:00:00Z","data":{}}',
        "",
    ]
    events = list(parse_sse(iter(lines)))
    assert [(e.id, e.type) for e in events] == [(1, "job"), (2, "vm.state")]
    assert events[0].data == {"progress": 5}


def test_unreachable_pyhvd_says_how_to_start_it(tmp_path: object) -> None:
    with (
        PyhvClient(f"{tmp_path}/none.sock") as c,
        pytest.raises(ApiError, match=r"pyhvd is not running .* start it with `pyhvd --home "),
    ):
        c.list_vms()


def test_not_found_round_trip() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return response(404, problem(404, "not-found", f"no VM named {request.url.path[5:]!r}"))

    c = PyhvClient(base_url="http://test")
    c._http = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))
    with pytest.raises(NotFoundError, match="no VM named 'x'"):
        c.get_vm("x")
