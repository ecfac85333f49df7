"""Roles on the TCP listener: 401 without or with an unknown token, 403 for a role without the
right, and in both cases nothing changes."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest
from pyhvd_harness import Pyhvd, PyhvdFactory

from pyhv.errors import AuthenticationError, PermissionDenied
from pyhv.model import VmConfig
from pyhv.service.schemas import VmPatch

TOKENS = {"admin": "a" * 32, "operator": "o" * 32, "reader": "r" * 32}


@pytest.fixture
def tcp_pyhvd(pyhvd_factory: PyhvdFactory) -> Pyhvd:
    d = pyhvd_factory(tcp=True)
    entries = [{"name": f"{role}-user", "role": role, "token": t} for role, t in TOKENS.items()]
    (d.home / "tokens.json").write_text(json.dumps({"tokens": entries}))
    d.start()
    d.client().create_vm(VmConfig(name="vm1", memory_startup_mib=64))
    return d


def test_reader_reads_but_cannot_change(tcp_pyhvd: Pyhvd) -> None:
    reader = tcp_pyhvd.tcp_client(TOKENS["reader"])
    assert [v.name for v in reader.list_vms()] == ["vm1"]
    assert reader.get_vm("vm1").config.name == "vm1"
    assert reader.jobs() == []
    with pytest.raises(PermissionDenied, match="role reader"):
        reader.create_vm(VmConfig(name="vm2", memory_startup_mib=64))
    with pytest.raises(PermissionDenied):
        reader.update_vm("vm1", VmPatch(notes="x"))
    with pytest.raises(PermissionDenied):
        reader.remove_vm("vm1")
    with pytest.raises(PermissionDenied):
        reader.start("vm1")
    view = tcp_pyhvd.client().get_vm("vm1")
    assert (view.config.notes, view.status.state) == ("", "Off")
    assert [v.name for v in tcp_pyhvd.client().list_vms()] == ["vm1"]


def test_operator_powers_but_cannot_configure(tcp_pyhvd: Pyhvd) -> None:
    operator = tcp_pyhvd.tcp_client(TOKENS["operator"])
    with pytest.raises(PermissionDenied, match="role operator"):
        operator.create_vm(VmConfig(name="vm2", memory_startup_mib=64))
    with pytest.raises(PermissionDenied):
        operator.remove_vm("vm1")
    # Power is the operator's right: the refusal comes from the VM's state, not the role.
    with pytest.raises(Exception, match="cannot pause VM 'vm1': it is Off"):
        operator.pause("vm1")


def test_admin_does_everything(tcp_pyhvd: Pyhvd) -> None:
    admin = tcp_pyhvd.tcp_client(TOKENS["admin"])
    admin.create_vm(VmConfig(name="vm2", memory_startup_mib=64))
    admin.update_vm("vm2", VmPatch(notes="by admin"))
    admin.remove_vm("vm2")
    assert [v.name for v in admin.list_vms()] == ["vm1"]


@pytest.mark.parametrize("token", [None, "nope", ""])
def test_missing_or_unknown_token_is_401(tcp_pyhvd: Pyhvd, token: str | None) -> None:
    c = tcp_pyhvd.tcp_client(token)
    with pytest.raises(AuthenticationError):
        c.list_vms()
    with pytest.raises(AuthenticationError):
        c.create_vm(VmConfig(name="vm3", memory_startup_mib=64))
    r = httpx.post(f"http://127.0.0.1:{tcp_pyhvd.tcp_port}/vms", json={"name": "vm3"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] == "unauthenticated"
    assert [v.name for v in tcp_pyhvd.client().list_vms()] == ["vm1"]


def test_revoked_token_is_refused_without_restart(tcp_pyhvd: Pyhvd) -> None:
    reader = tcp_pyhvd.tcp_client(TOKENS["reader"])
    assert reader.list_vms()
    (tcp_pyhvd.home / "tokens.json").write_text(json.dumps({"tokens": []}))
    with pytest.raises(AuthenticationError):
        reader.list_vms()


RAW_GET = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(b'GET /vms HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
    "sys.stdout.write(s.recv(65536).decode())\n"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_unix_peer_outside_group_pyhv_is_refused(pyhvd: Pyhvd) -> None:
    # Open the socket file to everyone, so the peer check is all that stands in the way.
    os.chmod(pyhvd.socket, 0o666)
    os.chmod(pyhvd.home, 0o755)
    os.chmod(pyhvd.home / "run", 0o755)
    r = subprocess.run(
        ["/usr/bin/python3", "-c", RAW_GET, str(pyhvd.socket)],
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout.startswith("HTTP/1.1 403 Forbidden"), r.stdout + r.stderr
    body = json.loads(r.stdout.replace("\r\n", "\n").split("\n\n", 1)[1])
    assert body["code"] == "forbidden" and "group pyhv" in body["detail"]


def test_tls_with_tokens(pyhvd_factory: PyhvdFactory) -> None:
    d = pyhvd_factory(tcp=True)
    cert, key = d.home / "cert.pem", d.home / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    d.tls = (cert, key)
    entries = [{"name": "r", "role": "reader", "token": TOKENS["reader"]}]
    (d.home / "tokens.json").write_text(json.dumps({"tokens": entries}))
    d.start()
    assert d.tcp_client(TOKENS["reader"]).list_vms() == []
    with pytest.raises(AuthenticationError):
        d.tcp_client("wrong").list_vms()


def test_console_websocket_needs_the_operate_right(tcp_pyhvd: Pyhvd) -> None:
    tcp_pyhvd.client().start("vm1", wait=True)
    try:
        with pytest.raises(AuthenticationError), tcp_pyhvd.tcp_client(None).console("vm1"):
            pass
        with (
            pytest.raises(PermissionDenied, match="role reader"),
            tcp_pyhvd.tcp_client(TOKENS["reader"]).console("vm1"),
        ):
            pass
        with tcp_pyhvd.tcp_client(TOKENS["operator"]).console("vm1") as conn:
            conn.send(b"\r")  # a live console: keystrokes go to the VM
    finally:
        tcp_pyhvd.client().turn_off("vm1", wait=True)
