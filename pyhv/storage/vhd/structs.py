"""VHD on-disk constants and layouts (Ref: VHD-SPEC v1.0 §§ footer, dynamic header, BAT;
shared/reference/vhd-vhdx.md §1). All integers are big-endian."""

from __future__ import annotations

import struct

from pyhv.units import GiB, MiB

SECTOR_SIZE = 512
FOOTER_SIZE = 512
LEGACY_FOOTER_SIZE = 511  # images older than Virtual PC 2004
HEADER_SIZE = 1024

FOOTER_COOKIE = b"conectix"
HEADER_COOKIE = b"cxsparse"
FEATURES_RESERVED = 0x00000002  # "must always be set"
FILE_FORMAT_VERSION = 0x00010000
HEADER_VERSION = 0x00010000
NO_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF  # fixed disks; and the header's unused data offset

DISK_TYPE_FIXED = 2
DISK_TYPE_DYNAMIC = 3
DISK_TYPE_DIFFERENCING = 4

BAT_UNUSED = 0xFFFFFFFF
DEFAULT_BLOCK_SIZE = 2 * MiB
MIN_CREATE_BLOCK_SIZE = 4096
MAX_CREATE_BLOCK_SIZE = 2 * MiB  # blktap's limit; Hyper-V uses 512 KiB or 2 MiB
MAX_READ_BLOCK_SIZE = 256 * MiB
MAX_SIZE = 2040 * GiB  # Hyper-V and qemu (VHD_MAX_SECTORS)

# Data of new blocks starts on this boundary, as Windows does, so punched holes free whole
# file-system blocks.
DATA_ALIGNMENT = 4096
# Differencing writes cover whole bitmap bytes (8 sectors), as 4 KiB-sector guests do.
BITMAP_GRAIN = 8 * SECTOR_SIZE

# Creator fields pyhv writes. "win " makes every reader (Hyper-V, Azure, qemu's vpc_open,
# blktap, VirtualBox) take current_size as the disk size and the geometry as informative, which
# is exactly pyhv's semantics; qemu would use the (smaller) CHS capacity for an unknown creator.
CREATOR_APP = b"win "
CREATOR_VERSION = 0x000A0000
CREATOR_HOST_OS = b"Wi2k"

# qemu vpc_open: these creators' current_size is trusted; others use the CHS capacity.
CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")

# Timestamps count seconds from 2000-01-01 00:00:00 UTC.
VHD_EPOCH = 946684800

# Footer: cookie, features, version, data_offset, timestamp, creator app, creator version,
# creator host OS, original size, current size, cylinders, heads, sectors/track, disk type,
# checksum, unique id, saved state.
FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB")
FOOTER_CHECKSUM_OFFSET = 64

# Dynamic header: cookie, data offset, table offset, header version, max table entries, block
# size, checksum, parent unique id, parent timestamp, reserved, parent unicode name.
HEADER = struct.Struct(">8sQQIIII16sII512s")
HEADER_CHECKSUM_OFFSET = 36
LOCATOR_OFFSET = 576
LOCATOR_COUNT = 8
# Parent locator entry: platform code, data space, data length, reserved, data offset.
LOCATOR = struct.Struct(">4sIIIQ")

PLATFORM_W2RU = b"W2ru"  # relative path, UTF-16LE
PLATFORM_W2KU = b"W2ku"  # absolute path, UTF-16LE
PLATFORM_WI2R = b"Wi2r"  # deprecated relative path, ANSI
PLATFORM_WI2K = b"Wi2k"  # deprecated absolute path, ANSI
PLATFORM_MACX = b"MacX"  # file URL, UTF-8
LOCATOR_SPACE = 4096  # bytes reserved per locator pyhv writes (a whole page, like Windows)
