from pathlib import Path

from pyhv.host.probe import BIOS_SIZE, EXPECTED_STATUS, interpret, probe_argv, probe_firmware


def test_firmware_jumps_nowhere_but_writes_the_exit_port() -> None:
    image = probe_firmware()
    assert len(image) == BIOS_SIZE == 65536
    assert image[-16:-8] == bytes([0xB0, 0x2A, 0xE6, 0xF4, 0xFA, 0xF4, 0xEB, 0xFD])
    assert not any(image[:-16])
    assert EXPECTED_STATUS == 85


def test_argv() -> None:
    argv = probe_argv("qemu", "kvm", Path("/t/p.bin"))
    assert argv[:7] == ["qemu", "-machine", "q35", "-accel", "kvm", "-cpu", "host"]
    assert argv[-4:] == ["-bios", "/t/p.bin", "-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
    assert "max" in probe_argv("qemu", "tcg", Path("/p"))


def test_interpret() -> None:
    assert interpret("kvm", 85, "", 0.1).ok
    hung = interpret("kvm", None, "", 15.0)
    assert not hung.ok
    assert "did not finish within 15 s" in hung.detail
    died = interpret("kvm", -6, "warning\nAssertion failed.\n\n", 0.1)
    assert died.detail == "QEMU under kvm was killed by SIGABRT: Assertion failed."
    assert interpret("tcg", 1, "", 0.1).detail == "QEMU under tcg exited with status 1"
