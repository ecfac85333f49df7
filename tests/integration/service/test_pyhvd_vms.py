"""The VM inventory through a real pyhvd: create, list, get, change, remove, and the errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pyhvd_harness import Pyhvd, PyhvdFactory

from pyhv.errors import ConfigError, ConflictError, NotFoundError, PermissionDenied, UsageError
from pyhv.model import VmConfig
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import VmPatch


def raw(d: Pyhvd) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://x")


def test_socket_is_group_only(pyhvd: Pyhvd) -> None:
    assert oct(os.stat(pyhvd.socket).st_mode & 0o777) == "0o660"


def test_vm_life_without_running(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    created = c.create_vm(VmConfig(name="web", memory_startup_mib=64))
    assert created.status.state == "Off"
    assert [v.name for v in c.list_vms()] == ["web"]
    assert c.get_vm("web").config.id == created.config.id
    assert c.get_vm(created.config.id).config.name == "web"

    changed = c.update_vm(
        "web",
        VmPatch(notes="front end", processor_count=2, policy=ProcessorPolicy(limit_percent=50)),
    )
    assert (changed.config.notes, changed.config.processor_count) == ("front end", 2)
    assert changed.policy.limit_percent == 50
    renamed = c.update_vm("web", VmPatch(name="www"))
    assert renamed.config.name == "www"
    with pytest.raises(NotFoundError):
        c.get_vm("web")

    c.remove_vm("www")
    assert c.list_vms() == []
    with pytest.raises(NotFoundError, match="no VM named 'www'"):
        c.get_vm("www")


def test_duplicate_name_is_409_with_one_line(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(VmConfig(name="db", memory_startup_mib=64))
    with pytest.raises(ConflictError, match="a VM named 'db' already exists") as err:
        c.create_vm(VmConfig(name="db", memory_startup_mib=64))
    assert "\n" not in str(err.value)
    r = raw(pyhvd).post("/vms", json={"name": "db"})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail", "code"}
    assert body["code"] == "conflict" and "\n" not in body["detail"]
    assert len(c.list_vms()) == 1


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "x", "processor_count": 500}, 422, "exceeds the limit of 240"),
        ({"name": "x", "processor_count": 64}, 422, "host has"),
        ({"name": "x", "memory_startup_mib": 1}, 422, "below the minimum"),
        ({"name": "x", "bogus": 1}, 422, "bogus"),
        ({"processor_count": 1}, 422, "name"),
        ({"name": "x", "processor_count": "many"}, 422, "processor_count"),
    ],
)
def test_invalid_config_is_one_line(pyhvd: Pyhvd, body: dict, status: int, words: str) -> None:
    r = raw(pyhvd).post("/vms", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail
    assert pyhvd.client().list_vms() == []


def test_invalid_json_body(pyhvd: Pyhvd) -> None:
    r = raw(pyhvd).post("/vms", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid-request"


def test_client_maps_codes_back(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    # The request's shape is checked first (422 invalid-request), then the host's limits.
    with pytest.raises(UsageError, match="exceeds the limit of 240 per VM"):
        c.create_vm(VmConfig.model_construct(name="x", processor_count=500))
    with pytest.raises(ConfigError, match="host has"):
        c.create_vm(VmConfig(name="x", processor_count=64))
    with pytest.raises(NotFoundError):
        c.job("nope")


def test_processors_change_only_when_off_is_checked(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(VmConfig(name="a", memory_startup_mib=64))
    with pytest.raises(ConfigError, match="below the minimum"):
        c.update_vm("a", VmPatch(memory_startup_mib=1))
    with pytest.raises(ConflictError):
        c.create_vm(VmConfig(name="b", memory_startup_mib=64))
        c.update_vm("b", VmPatch(name="a"))
    assert sorted(v.name for v in c.list_vms()) == ["a", "b"]


def test_paths_are_confined(pyhvd: Pyhvd, tmp_path_factory: pytest.TempPathFactory) -> None:
    c = pyhvd.client()
    disks = pyhvd.home / "disks"
    (disks / "ok.vhdx").write_bytes(b"")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.img").write_bytes(b"")
    (disks / "escape.vhdx").symlink_to(outside / "secret.img")

    def with_disk(path: str) -> VmConfig:
        return VmConfig.model_validate(
            {"name": "d", "scsi_controllers": [{"disks": [{"slot": 0, "path": path}]}]}
        )

    with pytest.raises(PermissionDenied, match="outside the storage roots"):
        c.create_vm(with_disk("/etc/passwd"))
    with pytest.raises(PermissionDenied, match="resolves to"):
        c.create_vm(with_disk(str(disks / "escape.vhdx")))
    with pytest.raises(UsageError, match=r"contains '\.\.'"):
        c.create_vm(with_disk(f"{disks}/../../etc/passwd"))
    relative = {"name": "d", "scsi_controllers": [{"disks": [{"slot": 0, "path": "disks/x"}]}]}
    r = raw(pyhvd).post("/vms", json=relative)
    assert r.status_code in (400, 422) and "not absolute" in r.json()["detail"]
    iso = VmConfig.model_validate({"name": "d", "dvd": {"path": "/etc/shadow"}})
    with pytest.raises(PermissionDenied, match="DVD image"):
        c.create_vm(iso)
    kernel = VmConfig.model_validate({"name": "d", "kernel": {"kernel": "/etc/shadow"}})
    with pytest.raises(PermissionDenied, match="kernel"):
        c.create_vm(kernel)
    assert c.list_vms() == []
    r = raw(pyhvd).post(
        "/vms",
        json={"name": "d", "scsi_controllers": [{"disks": [{"slot": 0, "path": "/etc/passwd"}]}]},
    )
    assert r.status_code == 403

    ok = c.create_vm(with_disk(str(disks / "ok.vhdx")))
    assert ok.config.scsi_controllers[0].disks[0].path == disks.resolve() / "ok.vhdx"


def test_extra_storage_roots(pyhvd_factory: PyhvdFactory, tmp_path: Path) -> None:
    (tmp_path / "img.vhdx").write_bytes(b"")
    d = pyhvd_factory(extra_env={"PYHV_STORAGE_ROOTS": str(tmp_path)})
    d.start()
    config = VmConfig.model_validate(
        {
            "name": "e",
            "scsi_controllers": [{"disks": [{"slot": 0, "path": str(tmp_path / "img.vhdx")}]}],
        }
    )
    assert d.client().create_vm(config).config.name == "e"
    assert str(tmp_path) in d.client().host().storage_roots


def test_listing_etag(pyhvd: Pyhvd) -> None:
    client = raw(pyhvd)
    first = client.get("/vms")
    etag = first.headers["etag"]
    assert client.get("/vms", headers={"If-None-Match": etag}).status_code == 304
    pyhvd.client().create_vm(VmConfig(name="new", memory_startup_mib=64))
    second = client.get("/vms", headers={"If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag


def test_unknown_route_and_openapi(pyhvd: Pyhvd) -> None:
    client = raw(pyhvd)
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["code"] == "not-found"
    schema = client.get("/openapi.json").json()
    assert {"/vms", "/vms/{vm}", "/vms/{vm}/{op}", "/jobs", "/events", "/host"} <= set(
        schema["paths"]
    )


def test_second_pyhvd_on_same_home_refuses(pyhvd: Pyhvd) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pyhv.service", "--home", str(pyhvd.home)],
        env=pyhvd.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    lock = pyhvd.home / "run" / "pyhvd.lock"
    assert r.stderr.strip().splitlines() == [
        f"pyhvd: error: another pyhvd is running for this home (it holds {lock})"
    ]


def test_events_replay_after_last_event_id(pyhvd: Pyhvd) -> None:
    c = pyhvd.client()
    c.create_vm(VmConfig(name="ev", memory_startup_mib=64))
    c.update_vm("ev", VmPatch(notes="n"))
    with c.events(last_event_id=0) as events:
        first, second = next(events), next(events)
    assert (first.type, first.data["name"]) == ("vm.created", "ev")
    assert second.type == "vm.changed" and second.id > first.id
    with c.events(last_event_id=first.id) as events:
        assert next(events).id == second.id
