"""A GGUF file's structure checked before conversion: a truncated or malformed file is one line, not a traceback.

transformers' GGUF reader trusts every count and length it reads, so a cut file fails with ``struct.error``
and a length of 2**64-1 with ``OverflowError``. ``gguf_problem`` walks the header, the metadata and the
tensor table with each read bounded by the file's size (about 0.1 s for a 100 MB model: the tensor data
itself is not read), then checks that the data of the last tensor ends inside the file.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 used 32-bit counts; transformers reads 2 and 3
MAX_DIMS = 4  # ggml tensors have at most 4 dimensions
MAX_ARRAY_NESTING = 8  # arrays of arrays are legal; deeper than this is no real file
DEFAULT_ALIGNMENT = 32
# fixed-size metadata value types -> struct format (strings are 8, arrays 9)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GgufFormatError(ValueError):
    """The file is not a complete, well-formed GGUF; the message says where it went wrong."""


class _Cursor:
    """Reads from a buffer, refusing any read past its end (a count or length the file cannot hold)."""

    def __init__(self, buffer: mmap.mmap | bytes):
        self.buffer = buffer
        self.pos = 0

    def take(self, size: int, what: str) -> int:
        """Start of the next ``size`` bytes (then skipped); GgufFormatError when the file ends first."""
        start = self.pos
        if size < 0 or start + size > len(self.buffer):
            raise GgufFormatError(f"truncated or malformed: {what} needs {size:,} bytes at byte {start:,}, "
                                  f"but the file ends at byte {len(self.buffer):,}")
        self.pos = start + size
        return start

    def unpack(self, fmt: str, what: str) -> int | float | bool:
        return struct.unpack_from(fmt, self.buffer, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> bytes:
        length = int(self.unpack("<Q", f"the length of {what}"))
        start = self.take(length, what)
        return bytes(self.buffer[start:start + length])


def gguf_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete GGUF file, in words for an error; None when its structure holds."""
    try:
        with open(path, "rb") as handle:
            if Path(path).stat().st_size < 24:
                return "too short to be a GGUF file (under 24 bytes)"
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                _check(_Cursor(buffer))
    except GgufFormatError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    return None


def _check(cursor: _Cursor) -> None:
    """Walk header, metadata and tensor table; check the tensor data fits in the file."""
    if bytes(cursor.buffer[:4]) != MAGIC:
        raise GgufFormatError(f"does not start with the GGUF magic bytes (found {bytes(cursor.buffer[:4])!r})")
    cursor.take(4, "the magic bytes")
    version = cursor.unpack("<I", "the version")
    if version not in VERSIONS:
        raise GgufFormatError(f"GGUF version {version} is not supported (2 or 3)")
    tensor_count = int(cursor.unpack("<Q", "the tensor count"))
    kv_count = int(cursor.unpack("<Q", "the metadata count"))
    alignment = DEFAULT_ALIGNMENT
    for index in range(kv_count):  # each entry takes at least 12 bytes, so a huge count ends at the file's end
        key = cursor.string(f"metadata key {index}").decode("utf-8", "replace")
        value_type = int(cursor.unpack("<I", f"the type of metadata {key!r}"))
        value = _skip_value(cursor, value_type, f"metadata {key!r}", 0)
        if key == "general.alignment" and isinstance(value, int) and value > 0:
            alignment = value
    data_ends = [_tensor_info(cursor, index) for index in range(tensor_count)]
    data_start = -(-cursor.pos // alignment) * alignment
    end = data_start + max(data_ends, default=0)
    if end > len(cursor.buffer):
        raise GgufFormatError(f"truncated: its tensor data ends at byte {end:,}, but the file ends at byte "
                              f"{len(cursor.buffer):,}")


def _skip_value(cursor: _Cursor, value_type: int, what: str, nesting: int) -> int | float | bool | None:
    """Step over one metadata value; return it when it is a scalar (the alignment is one)."""
    if value_type in _SCALARS:
        return cursor.unpack(_SCALARS[value_type], what)
    if value_type == _STRING:
        cursor.string(what)
        return None
    if value_type != _ARRAY or nesting >= MAX_ARRAY_NESTING:
        raise GgufFormatError(f"malformed: {what} has value type {value_type}, which GGUF does not define")
    item_type = int(cursor.unpack("<I", f"the item type of {what}"))
    count = int(cursor.unpack("<Q", f"the length of {what}"))
    if item_type in _SCALARS:
        cursor.take(count * struct.calcsize(_SCALARS[item_type]), what)
        return None
    if count > len(cursor.buffer):  # every string or array item takes at least 8 bytes
        raise GgufFormatError(f"truncated or malformed: {what} claims {count:,} items, more than the file's bytes")
    for _ in range(count):
        _skip_value(cursor, item_type, what, nesting + 1)
    return None


def _tensor_info(cursor: _Cursor, index: int) -> int:
    """Step over one tensor's entry; return where its data ends, relative to the data section."""
    name = cursor.string(f"the name of tensor {index}").decode("utf-8", "replace")
    dims = int(cursor.unpack("<I", f"the dimension count of tensor {name!r}"))
    if dims > MAX_DIMS:
        raise GgufFormatError(f"malformed: tensor {name!r} has {dims} dimensions (ggml allows {MAX_DIMS})")
    shape = [int(cursor.unpack("<Q", f"the shape of tensor {name!r}")) for _ in range(dims)]
    kind = int(cursor.unpack("<I", f"the type of tensor {name!r}"))
    offset = int(cursor.unpack("<Q", f"the data offset of tensor {name!r}"))
    return offset + _tensor_bytes(name, shape, kind)


def _tensor_bytes(name: str, shape: list[int], kind: int) -> int:
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType  # the package conversion needs anyway
    except ImportError:
        return 0  # sizes unknown here; the conversion names the missing package
    try:
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ValueError, KeyError):
        raise GgufFormatError(f"malformed: tensor {name!r} has type {kind}, which ggml does not define") from None
    elements = 1
    for size in shape:
        elements *= size
    return elements // block * block_bytes
