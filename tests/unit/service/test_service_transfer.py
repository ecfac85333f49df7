"""Compare-VM's verdict on an export's name and id, and Import-VM's new name, without pyhvd."""

from __future__ import annotations

import json

import pytest

from pyhv.client import _import_request
from pyhv.errors import ConfigError
from pyhv.model import VmConfig
from pyhv.model.limits import MAX_NAME_LENGTH
from pyhv.service.porting import renamed
from pyhv.service.schemas import CompatibilityReport, ImportMode, ImportRequest
from pyhv.service.transfer import compare

WEB = VmConfig(id="7f0c2a8e-3c55-4a8e-9d6f-2f1d0b6c8a11", name="web", memory_startup_mib=64)


def report(config: VmConfig, mode: ImportMode = ImportMode.REGISTER) -> CompatibilityReport:
    return compare(
        config,
        mode,
        ids={WEB.id},
        names={"web", "db"},
        host_memory_mib=1024,
        known_switches=set(),
    )


def test_a_taken_name_and_id_are_problems() -> None:
    assert report(WEB).problems == [
        f"a VM with id {WEB.id} already exists: import with a new id",
        "a VM named 'web' already exists: import under another name",
    ]
    assert report(WEB, ImportMode.COPY_NEW_ID).problems == [
        "a VM named 'web' already exists: import under another name",
    ]


def test_a_new_name_imports_beside_the_vm_of_the_old_one() -> None:
    web2 = renamed(WEB, "web-2")
    assert (web2.name, web2.id) == ("web-2", WEB.id)
    assert WEB.name == "web"  # the exported configuration itself is left as it was
    fine = report(web2, ImportMode.COPY_NEW_ID)
    assert fine == CompatibilityReport(vm_id=WEB.id, name="web-2", compatible=True, problems=[])
    assert report(renamed(WEB, "db"), ImportMode.COPY_NEW_ID).problems == [
        "a VM named 'db' already exists: import under another name",
    ]
    assert renamed(WEB, None) is WEB


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "VM name must not be empty"),
        ("  ", "VM name must not be empty"),
        ("a/b", "VM name 'a/b' must not contain '/'"),
        ("a\nb", r"VM name 'a\\nb' must not contain control characters"),
        ("x" * (MAX_NAME_LENGTH + 1), "over the limit"),
        (WEB.id, f"VM name '{WEB.id}' has the form of a VM id: choose another name"),
    ],
)
def test_a_new_name_follows_a_new_vms_rules(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        renamed(WEB, name)


def test_the_client_sends_new_name_only_when_given() -> None:
    assert json.loads(_import_request("/x", None, None)) == {"path": "/x", "mode": "register"}
    sent = json.loads(_import_request("/x", ImportMode.COPY_NEW_ID, "web-2"))
    assert sent == {"path": "/x", "mode": "copy-new-id", "new_name": "web-2"}
    assert ImportRequest.model_validate(sent).new_name == "web-2"
