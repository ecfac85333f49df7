"""Per-export I/O counters of the storage provider (what ``pyhv vm show`` reports per disk).

Pure accounting: the server measures latencies and calls :meth:`ExportStats.record`; nothing
here reads a clock. All mutation happens on the event loop thread, so no lock is needed; a
request is counted just after its reply left (the I/O thread sends it, the loop counts it).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

#: Upper bounds (µs) of the latency histogram buckets; a last bucket catches everything slower.
LATENCY_BUCKETS_US: tuple[int, ...] = (
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    100_000,
    1_000_000,
)

OPS = ("read", "write", "flush", "trim", "write_zeroes", "block_status")


@dataclass
class OpStats:
    """Counters for one kind of request."""

    ops: int = 0
    bytes: int = 0
    errors: int = 0
    latency_ns_sum: int = 0
    latency_ns_max: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_US) + 1))

    def record(self, nbytes: int, latency_ns: int, ok: bool) -> None:
        self.ops += 1
        if ok:
            self.bytes += nbytes
        else:
            self.errors += 1
        self.latency_ns_sum += latency_ns
        self.latency_ns_max = max(self.latency_ns_max, latency_ns)
        self.histogram[bisect_left(LATENCY_BUCKETS_US, latency_ns / 1000)] += 1

    def snapshot(self) -> dict[str, Any]:
        mean_us = self.latency_ns_sum / self.ops / 1000 if self.ops else 0.0
        return {
            "ops": self.ops,
            "bytes": self.bytes,
            "errors": self.errors,
            "latency_us_mean": round(mean_us, 1),
            "latency_us_max": round(self.latency_ns_max / 1000, 1),
            "latency_histogram_us": {
                **{f"le_{b}": n for b, n in zip(LATENCY_BUCKETS_US, self.histogram, strict=False)},
                "inf": self.histogram[-1],
            },
        }


@dataclass
class ExportStats:
    """Counters of one export, summed over all its connections and image swaps."""

    ops: dict[str, OpStats] = field(default_factory=lambda: {op: OpStats() for op in OPS})
    connections: int = 0  # currently open
    connections_total: int = 0

    def record(self, op: str, nbytes: int, latency_ns: int, ok: bool = True) -> None:
        """Count one finished request of kind ``op`` (one of :data:`OPS`)."""
        self.ops[op].record(nbytes, latency_ns, ok)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: ``{"read": {"ops", "bytes", …}, …, "connections": n}``."""
        out: dict[str, Any] = {op: s.snapshot() for op, s in self.ops.items()}
        out["connections"] = self.connections
        out["connections_total"] = self.connections_total
        return out
