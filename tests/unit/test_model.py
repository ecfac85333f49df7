import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pyhv.errors import ConfigError
from pyhv.model import (
    VmConfig,
    VmState,
    VmStatus,
    check_fits_host,
    make_vm_config,
    parse_vm_config,
)
from pyhv.model import __all__ as exported
from pyhv.model.limits import describe_mib


def error_of(**fields: Any) -> str:
    with pytest.raises(ConfigError) as info:
        make_vm_config(**fields)
    line = str(info.value)
    assert "\n" not in line
    return line


def disks(*slots: int, prefix: str = "/d") -> dict[str, Any]:
    return {"disks": [{"slot": s, "path": f"{prefix}{s}.vhdx"} for s in slots]}


def test_defaults_round_trip() -> None:
    config = make_vm_config(name="web")
    assert config.generation == 1
    assert config.processor_count == 1
    assert len(config.scsi_controllers) == 1
    assert config.com1.mode == "console"
    again = parse_vm_config(config.model_dump_json())
    assert again == config


def test_article_limits_are_allowed() -> None:
    config = make_vm_config(
        name="big",
        processor_count=4,
        memory_startup_mib=32 * 1024,
        network_adapters=[{}] * 12,
        scsi_controllers=[disks(*range(256), prefix=f"/c{c}/") for c in range(4)],
    )
    assert len(config.disks()) == 1024


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"processor_count": 0}, "processor count 0 is below the minimum of 1"),
        ({"processor_count": 241}, "processor count 241 exceeds the limit of 240 per VM"),
        ({"memory_startup_mib": 31}, "startup memory 31 MiB is below the minimum of 32 MiB"),
        (
            {"memory_startup_mib": 13 * 1024**2},
            "startup memory 13 TiB exceeds the limit of 12 TiB per VM",
        ),
        ({"network_adapters": [{}] * 13}, "13 network adapters exceed the limit of 12"),
        ({"scsi_controllers": [{}] * 5}, "5 SCSI controllers exceed the limit of 4"),
        ({"scsi_controllers": [disks(256)]}, "SCSI slot 256 is outside 0–255"),
        ({"scsi_controllers": [disks(3, 3)]}, "SCSI slot 3 is used twice"),
        ({"name": ""}, "VM name must not be empty"),
        ({"name": "x" * 101}, "VM name is 101 characters, over the limit of 100"),
        ({"name": "a/b"}, "must not contain '/'"),
        ({"name": "a\nb"}, "must not contain control characters"),
        ({"id": "nope"}, "VM id 'nope' is not a UUID"),
        ({"generation": 3}, "generation: input should be 1 or 2 (got 3)"),
        ({"processor_count": "many"}, "processor_count: input should be a valid integer"),
        ({"boot_order": ["floppy"]}, "boot device 'floppy' is not one of"),
        ({"boot_order": ["dvd", "dvd"]}, "names a device twice"),
        ({"network_adapters": [{"mac": "01:00:00:00:00:01"}]}, "is a multicast address"),
        ({"com2": {"mode": "pipe"}}, "needs a socket path"),
        ({"dvd": {"controller": 1}}, "DVD drive is on SCSI controller 1, but the VM has 1"),
        ({"bogus": 1}, "bogus: extra inputs are not permitted"),
        ({"kernel": {"kernel": "vmlinuz"}}, "path 'vmlinuz' is not absolute: give the full path"),
        ({"scsi_controllers": [{"disks": [{"slot": 0, "path": "d.vhdx"}]}]}, "is not absolute"),
        ({"com1": {"mode": "console"}, "com2": {"mode": "console"}}, "only one COM port"),
    ],
)
def test_limit_errors_are_one_line(fields: dict[str, Any], expected: str) -> None:
    assert expected in error_of(**{"name": "vm", **fields})


def test_a_disk_cannot_be_attached_twice() -> None:
    twice = [
        {"disks": [{"slot": 0, "path": "/a.vhdx"}]},
        {"disks": [{"slot": 1, "path": "/a.vhdx"}]},
    ]
    assert "disk /a.vhdx is attached twice (0:0, 1:1)" in error_of(name="v", scsi_controllers=twice)


def test_dvd_must_not_take_a_disk_slot() -> None:
    line = error_of(name="v", scsi_controllers=[disks(5)], dvd={"slot": 5})
    assert "both use SCSI slot 0:5" in line


def test_input_cannot_break_the_line() -> None:
    assert "dvd.\\nx: extra inputs" in error_of(name="v", dvd={"\nx": 1})


def test_more_problems_are_counted() -> None:
    assert error_of(processor_count=0).endswith("(and 1 more problem)")


def test_mac_is_normalised() -> None:
    config = make_vm_config(name="v", network_adapters=[{"mac": "52-54-00-AB-CD-EF"}])
    assert config.network_adapters[0].mac == "52:54:00:ab:cd:ef"


def test_parse_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^/x/vm.json: name: field required"):
        parse_vm_config(b"{}", source="/x/vm.json")
    with pytest.raises(ConfigError, match="Invalid JSON: EOF while parsing"):
        parse_vm_config(b"{", source="/x/vm.json")


def test_assignment_is_validated() -> None:
    config = make_vm_config(name="v")
    with pytest.raises(ValidationError):
        config.processor_count = 0


def test_fits_host() -> None:
    config = make_vm_config(name="v", processor_count=9, memory_startup_mib=4096)
    with pytest.raises(ConfigError, match=r"processor count 9 exceeds the limit of 2 \(host has 2"):
        check_fits_host(config, host_cores=2, host_memory_mib=8192)
    with pytest.raises(ConfigError, match="startup memory 4 GiB exceeds the limit of 2 GiB"):
        check_fits_host(config, host_cores=16, host_memory_mib=2048)
    check_fits_host(config, host_cores=16, host_memory_mib=8192)


def test_describe_mib() -> None:
    assert [describe_mib(m) for m in (31, 1024, 24105, 3 * 1024 * 1024)] == [
        "31 MiB",
        "1 GiB",
        "23.5 GiB",
        "3 TiB",
    ]


def test_disks_are_listed_in_controller_slot_order() -> None:
    config = make_vm_config(name="v", scsi_controllers=[disks(7, 2), disks(0, prefix="/e")])
    assert [(c, d.slot) for c, d in config.disks()] == [(0, 2), (0, 7), (1, 0)]
    assert config.disks()[0][1].path == Path("/d2.vhdx")


def test_status_display() -> None:
    assert VmStatus().display_state == "Off"
    assert VmStatus(state=VmState.OFF, critical=True).display_state == "Off-Critical"


def test_exports_are_sorted_and_real() -> None:
    import pyhv.model as m

    assert exported == sorted(exported)
    assert all(hasattr(m, name) for name in exported)
    assert VmConfig.__name__ in exported


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {"name": st.text(max_size=8)},
    optional={
        "processor_count": _json,
        "memory_startup_mib": _json,
        "scsi_controllers": _json,
        "boot_order": _json,
        "dvd": _json,
        "com2": _json,
    },
)


@given(_fields)
def test_any_input_gives_a_config_or_one_line(fields: dict[str, Any]) -> None:
    try:
        config = parse_vm_config(json.dumps(fields))
    except ConfigError as e:
        assert "\n" not in str(e)
        assert str(e)
    else:
        assert parse_vm_config(config.model_dump_json()) == config
