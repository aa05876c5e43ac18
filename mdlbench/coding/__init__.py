"""Real compression: ``mdlbench compress`` / ``decompress`` turn code lengths into an actual bitstream.

See coder.py for what is coded and the determinism conditions, container.py for the ``.mdlz`` file format.
"""

from mdlbench.coding.coder import (
    CODING_SCHEMA,
    CODING_TABLE,
    CodingSettings,
    Compressed,
    DecodeMismatchError,
    Decompressed,
    ModelMismatchError,
    coding_table,
    compress_bytes,
    decompress_bytes,
    resolve_settings,
    verify_coding,
)
from mdlbench.coding.container import CorruptFileError

__all__ = [
    "CODING_SCHEMA", "CODING_TABLE", "CodingSettings", "Compressed", "CorruptFileError", "DecodeMismatchError",
    "Decompressed", "ModelMismatchError", "coding_table", "compress_bytes", "decompress_bytes", "resolve_settings",
    "verify_coding",
]
