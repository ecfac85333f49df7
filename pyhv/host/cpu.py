"""The host CPU as /proc/cpuinfo describes it (parsing is pure)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

VIRT_FLAGS = ("vmx", "svm")  # Intel VT-x, AMD-V


class CpuInfo(BaseModel):
    vendor: str
    model: str
    logical_cpus: int
    flags: frozenset[str]

    @property
    def virtualization_flag(self) -> str | None:
        """``vmx`` or ``svm`` when the CPU exposes hardware virtualization, else None."""
        return next((f for f in VIRT_FLAGS if f in self.flags), None)


def parse_cpuinfo(text: str) -> CpuInfo:
    """Vendor, model and flags of the first processor; one block per logical CPU."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    first: dict[str, str] = {}
    for line in blocks[0].splitlines() if blocks else []:
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    return CpuInfo(
        vendor=first.get("vendor_id", "unknown"),
        model=first.get("model name", "unknown"),
        logical_cpus=sum(1 for b in blocks if b.lstrip().startswith("processor")),
        flags=frozenset(first.get("flags", "").split()),
    )


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    return parse_cpuinfo(path.read_text())
