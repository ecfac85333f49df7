"""The client's error mapping and SSE parsing, on canned responses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from pyhv.client import PyhvClient, parse_sse, raise_for_problem
from pyhv.errors import ApiError, ConflictError, NotFoundError, StateError, UsageError
from pyhv.http_lite import Response
from pyhv.service.api.errors import problem


def response(status: int, body: object | None = None, text: str = "") -> Response:
    if body is not None:
        return Response(status, json.dumps(body).encode())
    return Response(status, text.encode())


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


class _Canned(BaseHTTPRequestHandler):
    """A pyhvd stand-in over TCP: 404 for every VM but vm1, and a job that runs until the
    event stream says it completed."""

    def do_GET(self) -> None:
        job = {"id": "j1", "operation": "start", "state": "Running", "progress": 0}
        if self.path == "/events":  # the job's end, then the stream closes (HTTP/1.0)
            done = {**job, "state": "Completed", "progress": 100}
            event = {"id": 7, "type": "job", "time": "2026-01-01T00:00:00Z", "data": done}
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(f": subscribed\n\ndata: {json.dumps(event)}\n\n".encode())
        elif self.path.startswith("/jobs/"):
            self._send(200, job)
        elif self.path == "/vms/vm1":
            self._send(200, {"status": {"state": "Running", "critical": False, "reason": None}})
        else:
            self._send(404, problem(404, "not-found", f"no VM named {self.path[5:]!r}"))

    def do_POST(self) -> None:
        self._send(202, {"id": "j1", "operation": self.path, "state": "Running", "progress": 0})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_not_found_round_trip(canned: str) -> None:
    c = PyhvClient(base_url=canned)
    with pytest.raises(NotFoundError, match="no VM named 'x'"):
        c.get_vm("x")


def test_power_job_and_state_without_models(canned: str) -> None:
    c = PyhvClient(base_url=canned)
    job = c.power_job("vm1", "start", ready_timeout_s=5)
    assert job["operation"] == "/vms/vm1/start?ready_timeout_s=5"
    assert c.follow_job(job["id"])["state"] == "Completed"
    assert c.vm_state("vm1").display_state == "Running"


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("a?b", "a%3Fb"),
        ("a#b", "a%23b"),
        ("%41", "%2541"),
        ("a b", "a%20b"),
        ("é-ü", "%C3%A9-%C3%BC"),
    ],
)
def test_vm_names_are_quoted_in_urls(canned: str, name: str, sent: str) -> None:
    """Sent as it is, 'a?b' named VM 'a' and '%41' VM 'A' (a remove would remove the wrong VM),
    and 'é' failed in http.client with a traceback."""
    c = PyhvClient(base_url=canned)
    with pytest.raises(NotFoundError, match=f"no VM named '{sent}'"):
        c.get_vm(name)
    assert c.power_job(name, "stop")["operation"] == f"/vms/{sent}/stop"


def test_empty_vm_name_is_refused_before_sending() -> None:
    """``/vms/`` is the VM list: pyhvd answered a bare 307, shown as "pyhvd answered 307:"."""
    c = PyhvClient(base_url="http://127.0.0.1:1")
    with pytest.raises(UsageError, match=r"^VM name must not be empty$"):
        c.remove_vm("")
    with pytest.raises(NotFoundError, match=r"^no VM named 'a/b': VM names have no '/'$"):
        c.start("a/b")  # pyhvd answered "Not Found: POST /vms/a/b/start"
