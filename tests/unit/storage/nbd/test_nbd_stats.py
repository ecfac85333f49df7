"""Per-export counters."""

from __future__ import annotations

from pyhv.storage.nbd.stats import LATENCY_BUCKETS_US, ExportStats


def test_record_and_snapshot() -> None:
    s = ExportStats()
    s.record("read", 4096, 40_000)  # 40 µs
    s.record("read", 4096, 160_000)  # 160 µs
    s.record("write", 512, 2_000_000_000, ok=False)  # 2 s, failed
    snap = s.snapshot()
    assert snap["read"]["ops"] == 2 and snap["read"]["bytes"] == 8192
    assert snap["read"]["latency_us_mean"] == 100.0 and snap["read"]["latency_us_max"] == 160.0
    hist = snap["read"]["latency_histogram_us"]
    assert hist["le_50"] == 1 and hist["le_250"] == 1 and sum(hist.values()) == 2
    assert snap["write"]["errors"] == 1 and snap["write"]["bytes"] == 0
    assert snap["write"]["latency_histogram_us"]["inf"] == 1
    assert snap["flush"]["ops"] == 0 and snap["flush"]["latency_us_mean"] == 0.0
    assert len(hist) == len(LATENCY_BUCKETS_US) + 1


def test_bucket_bounds_are_inclusive() -> None:
    s = ExportStats()
    s.record("trim", 0, 50_000)  # exactly 50 µs
    assert s.snapshot()["trim"]["latency_histogram_us"]["le_50"] == 1
