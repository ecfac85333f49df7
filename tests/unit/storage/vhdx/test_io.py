from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.bat import BatGeometry, pack_entry
from pyhv.storage.vhdx.io import Run, Source, map_range
from pyhv.units import MiB


def test_states_map_to_sources() -> None:
    g = BatGeometry(1 * MiB, 512, 4 * MiB, False)
    bat = [
        pack_entry(s.PayloadState.FULLY_PRESENT, 5 * MiB),
        pack_entry(s.PayloadState.FULLY_PRESENT, 6 * MiB),
        pack_entry(s.PayloadState.ZERO),
        pack_entry(s.PayloadState.NOT_PRESENT),
    ]
    runs = map_range(g, bat, 100, 4 * MiB - 100, lambda c: b"")
    # Two physically contiguous blocks merge into one run; absent blocks read zeros.
    assert runs == [
        Run(Source.FILE, 100, 2 * MiB - 100, 5 * MiB + 100),
        Run(Source.ZERO, 2 * MiB, 2 * MiB),
    ]


def test_differencing_partial_block_uses_bitmap() -> None:
    g = BatGeometry(1 * MiB, 512, 2 * MiB, True)
    bat = [0] * g.entry_count
    bat[0] = pack_entry(s.PayloadState.PARTIALLY_PRESENT, 8 * MiB)
    bitmap = bytearray(MiB)
    bitmap[0] = 0b00000110  # sectors 1 and 2 present
    bat[g.payload_index(1)] = pack_entry(s.PayloadState.UNMAPPED)
    runs = map_range(g, bat, 256, 2 * MiB - 256, lambda c: bitmap)
    assert runs == [
        Run(Source.PARENT, 256, 256),
        Run(Source.FILE, 512, 1024, 8 * MiB + 512),
        Run(Source.PARENT, 1536, MiB - 1536),
        Run(Source.ZERO, MiB, MiB),
    ]


def test_differencing_not_present_reads_parent() -> None:
    g = BatGeometry(1 * MiB, 4096, 1 * MiB, True)
    assert map_range(g, [0] * g.entry_count, 0, 4096, lambda c: b"") == [
        Run(Source.PARENT, 0, 4096)
    ]
