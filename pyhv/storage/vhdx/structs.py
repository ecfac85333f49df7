"""On-disk constants, GUIDs and struct layouts of VHDX, named as in the specification.

# Ref: [MS-VHDX] v20180912 §2.1 (layout), §2.2 (headers, region table), §2.3 (log),
# §2.5 (BAT), §2.6 (metadata). All integers are little-endian; GUIDs are stored in Microsoft
# mixed-endian order, i.e. ``uuid.UUID(bytes_le=…)``.
"""

from __future__ import annotations

import enum
import struct
import uuid

from pyhv.units import KiB, MiB, TiB

# -- §2.1 file layout -------------------------------------------------------------------------
FILE_IDENTIFIER_OFFSET = 0
FILE_IDENTIFIER_SIZE = 64 * KiB
FILE_IDENTIFIER_SIGNATURE = b"vhdxfile"
HEADER_1_OFFSET = 64 * KiB
HEADER_2_OFFSET = 128 * KiB
HEADER_OFFSETS = (HEADER_1_OFFSET, HEADER_2_OFFSET)
HEADER_SIZE = 4 * KiB  # the checksummed part; the rest of each 64 KiB slot is reserved
REGION_TABLE_1_OFFSET = 192 * KiB
REGION_TABLE_2_OFFSET = 256 * KiB
REGION_TABLE_OFFSETS = (REGION_TABLE_1_OFFSET, REGION_TABLE_2_OFFSET)
REGION_TABLE_SIZE = 64 * KiB
HEADER_SECTION_SIZE = 1 * MiB  # nothing but the above lives below this offset
REGION_ALIGNMENT = 1 * MiB  # regions and payload blocks are 1 MiB aligned

# -- §2.2.2 header ----------------------------------------------------------------------------
HEADER_SIGNATURE = b"head"
HEADER_VERSION = 1
LOG_VERSION = 0
# Signature, Checksum, SequenceNumber, FileWriteGuid, DataWriteGuid, LogGuid, LogVersion,
# Version, LogLength, LogOffset (80 bytes; 4016 reserved bytes follow).
HEADER_STRUCT = struct.Struct("<4sIQ16s16s16sHHIQ")
HEADER_CHECKSUM_OFFSET = 4

# -- §2.2.3 region table ----------------------------------------------------------------------
REGION_TABLE_SIGNATURE = b"regi"
REGION_TABLE_HEADER_STRUCT = struct.Struct("<4sIII")  # Signature, Checksum, EntryCount, Reserved
REGION_ENTRY_STRUCT = struct.Struct("<16sQII")  # Guid, FileOffset, Length, Required(bit 0)
REGION_TABLE_MAX_ENTRIES = 2047
REGION_TABLE_CHECKSUM_OFFSET = 4
BAT_REGION_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION_GUID = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
KNOWN_REGIONS = frozenset({BAT_REGION_GUID, METADATA_REGION_GUID})

# -- §2.3 log ---------------------------------------------------------------------------------
LOG_SECTOR_SIZE = 4 * KiB
LOG_ENTRY_SIGNATURE = b"loge"
# Signature, Checksum, EntryLength, Tail, SequenceNumber, DescriptorCount, Reserved, LogGuid,
# FlushedFileOffset, LastFileOffset (64 bytes).
LOG_ENTRY_HEADER_STRUCT = struct.Struct("<4sIIIQII16sQQ")
LOG_ENTRY_CHECKSUM_OFFSET = 4
LOG_DESCRIPTOR_SIZE = 32
LOG_DESCRIPTORS_PER_SECTOR = LOG_SECTOR_SIZE // LOG_DESCRIPTOR_SIZE  # 128
ZERO_DESCRIPTOR_SIGNATURE = b"zero"
DATA_DESCRIPTOR_SIGNATURE = b"desc"
ZERO_DESCRIPTOR_STRUCT = struct.Struct("<4sIQQQ")  # Sig, Reserved, ZeroLength, FileOffset, Seq
DATA_DESCRIPTOR_STRUCT = struct.Struct("<4sI8sQQ")  # Sig, Trailing, Leading, FileOffset, Seq
DATA_SECTOR_SIGNATURE = b"data"
DATA_SECTOR_PAYLOAD = slice(8, 4092)  # bytes a data sector carries; the rest sit in the descriptor
DEFAULT_LOG_SIZE = 1 * MiB

# -- §2.5 BAT ---------------------------------------------------------------------------------
BAT_ENTRY_SIZE = 8
BAT_STATE_MASK = 0x7
BAT_FILE_OFFSET_SHIFT = 20  # FileOffsetMB occupies bits 20..63
SECTOR_BITMAP_BLOCK_SIZE = 1 * MiB
CHUNK_SECTORS = 1 << 23  # sectors one sector-bitmap block describes (2**23 bits)


class PayloadState(enum.IntEnum):
    """§2.5.1.1 payload block states."""

    NOT_PRESENT = 0
    UNDEFINED = 1
    ZERO = 2
    UNMAPPED = 3
    UNMAPPED_V095 = 5  # the v0.95 draft's value for UNMAPPED; qemu and Windows accept it
    FULLY_PRESENT = 6
    PARTIALLY_PRESENT = 7


class BitmapState(enum.IntEnum):
    """§2.5.1.2 sector bitmap block states."""

    NOT_PRESENT = 0
    PRESENT = 6


# -- §2.6 metadata ----------------------------------------------------------------------------
METADATA_SIGNATURE = b"metadata"
METADATA_TABLE_SIZE = 64 * KiB
METADATA_HEADER_STRUCT = struct.Struct("<8sHH20x")  # Signature, Reserved, EntryCount
METADATA_ENTRY_STRUCT = struct.Struct("<16sIIII")  # ItemId, Offset, Length, Flags, Reserved
METADATA_MAX_ENTRIES = 2047
METADATA_ITEM_MAX_LENGTH = 1 * MiB
METADATA_FLAG_IS_USER = 0x1
METADATA_FLAG_IS_VIRTUAL_DISK = 0x2
METADATA_FLAG_IS_REQUIRED = 0x4

FILE_PARAMETERS_GUID = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE_GUID = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE83_DATA_GUID = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE_GUID = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE_GUID = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR_GUID = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
KNOWN_METADATA = frozenset(
    {
        FILE_PARAMETERS_GUID,
        VIRTUAL_DISK_SIZE_GUID,
        PAGE83_DATA_GUID,
        LOGICAL_SECTOR_SIZE_GUID,
        PHYSICAL_SECTOR_SIZE_GUID,
        PARENT_LOCATOR_GUID,
    }
)
FILE_PARAMETERS_LEAVE_BLOCK_ALLOCATED = 0x1
FILE_PARAMETERS_HAS_PARENT = 0x2

# §2.6.2.6.3: the only locator type this format defines.
VHDX_PARENT_LOCATOR_TYPE = uuid.UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")
PARENT_LOCATOR_HEADER_STRUCT = struct.Struct("<16sHH")  # LocatorType, Reserved, KeyValueCount
PARENT_LOCATOR_ENTRY_STRUCT = struct.Struct("<IIHH")  # KeyOffset, ValueOffset, KeyLen, ValueLen

# -- §2.6.2 limits ----------------------------------------------------------------------------
MIN_BLOCK_SIZE = 1 * MiB
MAX_BLOCK_SIZE = 256 * MiB
MAX_VIRTUAL_DISK_SIZE = 64 * TiB
SECTOR_SIZES = (512, 4096)

# -- pyhv's choices ---------------------------------------------------------------------------
DEFAULT_BLOCK_SIZE = 32 * MiB  # Hyper-V's default for dynamic and fixed disks
DEFAULT_DIFFERENCING_BLOCK_SIZE = 2 * MiB  # Hyper-V's default for .avhdx checkpoints
DEFAULT_PHYSICAL_SECTOR_SIZE = 4096  # what New-VHD picks for VHDX
NULL_GUID = uuid.UUID(int=0)
