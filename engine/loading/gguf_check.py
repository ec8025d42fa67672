"""Validate a GGUF file's declared sizes against its real size before any reader parses it.

Scope: `check_gguf_file` walks the GGUF header (magic, version, counts, every metadata key and
value, every tensor-info record) with bounds checks, as llama.cpp's `gguf_init_from_file` does:
every declared count or length (kv count, tensor count, string lengths, array lengths, tensor
dimensions, tensor data offsets and sizes) must fit in the bytes the file actually has. A hostile
or truncated file is rejected with a `ModelLoadError` naming the file and the field, in time
proportional to the file's size, before `gguf.GGUFReader` (which loops once per *declared* array
element and so never ends on a 100-byte file declaring 2^61 elements) ever sees it.

Non-goals: interpreting metadata values or tensor contents (the reader does that), repairing
files, GGUF version 1 (unsupported by the reader too).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

from agentkit.errors import ModelLoadError

__all__ = ["GGUFLayout", "check_gguf_file"]

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_ARRAY_DEPTH = 4
_DEFAULT_ALIGNMENT = 32
# Fixed-size GGUF value types: type id -> (struct code, byte size).
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFLayout:
    """What the header walk established: counts, where tensor data starts, the file size."""

    version: int
    tensor_count: int
    kv_count: int
    data_offset: int
    file_size: int
    data_end: int


class _Cursor:
    """Bounds-checked reads from the mapped file; every failure names the file and the field."""

    def __init__(self, buf: mmap.mmap | bytes, path: str, order: str) -> None:
        self.buf, self.path, self.order, self.pos, self.size = buf, path, order, 0, len(buf)

    def fail(self, what: str, detail: str) -> ModelLoadError:
        return ModelLoadError(
            f"GGUF file {self.path!r} is invalid or truncated: {what} {detail} (file size {self.size} bytes);"
            " re-download or re-convert the file"
        )

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(what, f"needs {n} bytes at offset {self.pos}, beyond the end of the file")

    def unpack(self, code: str, what: str) -> int:
        width = struct.calcsize(code)
        self.need(width, what)
        (value,) = struct.unpack_from(self.order + code, self.buf, self.pos)
        self.pos += width
        return value

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def string(self, what: str) -> bytes:
        n = self.unpack("Q", f"{what} length")
        self.need(n, f"{what} (declared length {n})")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def value(self, vtype: int, key: str, depth: int = 0) -> int | bytes | None:
        """Read (fixed types, strings) or skip (arrays) one value; returns scalars for the caller."""
        if vtype in _FIXED:
            return self.unpack(_FIXED[vtype], f"metadata {key!r}")
        if vtype == _STRING:
            return self.string(f"metadata {key!r} string")
        if vtype != _ARRAY:
            raise self.fail(f"metadata {key!r}", f"has unknown value type {vtype}")
        if depth >= _MAX_ARRAY_DEPTH:
            raise self.fail(f"metadata {key!r}", f"nests arrays deeper than {_MAX_ARRAY_DEPTH} levels")
        item = self.unpack("I", f"metadata {key!r} array item type")
        count = self.unpack("Q", f"metadata {key!r} array length")
        what = f"metadata {key!r} array of {count} elements"
        if item in _FIXED:
            self.skip(count * struct.calcsize(_FIXED[item]), what)
        elif item == _STRING:
            self.need(count * 8, what)  # each string has at least its 8-byte length
            length = struct.Struct(self.order + "Q").unpack_from
            buf, pos, size = self.buf, self.pos, self.size
            for i in range(count):  # the hot loop of a vocabulary: kept free of method calls
                end = pos + 8 + length(buf, pos)[0]
                if end > size:
                    self.pos = pos
                    raise self.fail(f"{what}: string #{i}", f"ends at byte {end}, beyond the end of the file")
                pos = end
            self.pos = pos
        elif item == _ARRAY:
            self.need(count * 12, what)  # each inner array has at least its type and length
            for _ in range(count):
                self.value(_ARRAY, key, depth + 1)
        else:
            raise self.fail(f"metadata {key!r}", f"is an array of unknown item type {item}")
        return None


def _walk(cur: _Cursor) -> GGUFLayout:
    from gguf.constants import GGML_QUANT_SIZES

    cur.skip(4, "magic")
    version = cur.unpack("I", "version")
    if version not in _VERSIONS:
        raise ModelLoadError(
            f"GGUF file {cur.path!r} has version {version}; agentkit reads GGUF versions 2 and 3"
        )
    tensor_count = cur.unpack("Q", "tensor count")
    kv_count = cur.unpack("Q", "metadata kv count")
    # Each kv needs >= 13 bytes (key length, value type, 1-byte value); each tensor info >= 32.
    cur.need(kv_count * 13, f"metadata kv count {kv_count}")
    cur.need(tensor_count * 32, f"tensor count {tensor_count}")
    alignment = _DEFAULT_ALIGNMENT
    for i in range(kv_count):
        key = cur.string(f"metadata key #{i}").decode("utf-8", "replace")
        vtype = cur.unpack("I", f"metadata {key!r} value type")
        value = cur.value(vtype, key)
        if key == "general.alignment":
            if vtype != 4 or not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise cur.fail("metadata 'general.alignment'", "must be a power-of-two UINT32")
            alignment = value
    tensors = []
    for i in range(tensor_count):
        name = cur.string(f"tensor #{i} name").decode("utf-8", "replace")
        n_dims = cur.unpack("I", f"tensor {name!r} dimension count")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise cur.fail(f"tensor {name!r}", f"declares {n_dims} dimensions (1..{_MAX_DIMS} allowed)")
        dims = [cur.unpack("Q", f"tensor {name!r} dimension") for _ in range(n_dims)]
        ttype = cur.unpack("I", f"tensor {name!r} type")
        sizes = next((v for k, v in GGML_QUANT_SIZES.items() if int(k) == ttype), None)
        if sizes is None:
            raise cur.fail(f"tensor {name!r}", f"has unknown ggml type {ttype}")
        block, type_size = sizes
        if dims[0] % block:
            raise cur.fail(f"tensor {name!r}", f"has row length {dims[0]}, not a multiple of its block size {block}")
        n_elements = 1
        for d in dims:
            n_elements *= d
        offset = cur.unpack("Q", f"tensor {name!r} data offset")
        tensors.append((name, offset, n_elements // block * type_size))
    data_offset = -(-cur.pos // alignment) * alignment
    data_end = data_offset
    for name, offset, nbytes in tensors:
        end = data_offset + offset + nbytes
        if end > cur.size:
            raise ModelLoadError(
                f"GGUF file {cur.path!r} is {cur.size} bytes, shorter than its tensor table requires: tensor"
                f" {name!r} ({nbytes} bytes at data offset {offset}) ends at byte {end}. The file is truncated"
                " (an interrupted download?) or corrupt; re-download it"
            )
        data_end = max(data_end, end)
    return GGUFLayout(version, tensor_count, kv_count, data_offset, cur.size, data_end)


def check_gguf_file(path: str) -> GGUFLayout:
    """Walk `path`'s GGUF header, checking every declared size against the file size.

    Raises ModelLoadError (a ValueError) naming the file and the offending field when the file is
    not GGUF, has an unsupported version, declares counts, lengths or tensors that do not fit in
    the file, or has unknown value or tensor types. Cost: one pass over the header (~0.1 s for a
    50k-token vocabulary); tensor data is not read.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8 or head[:4] != _MAGIC:
                raise ModelLoadError(
                    f"{path!r} is not a readable GGUF file (it does not start with the 'GGUF' magic bytes)"
                )
            order = ">" if struct.unpack_from("<I", head, 4)[0] & 0xFFFF == 0 else "<"
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _walk(_Cursor(buf, path, order))
    except OSError as exc:
        raise ModelLoadError(f"cannot read GGUF file {path!r}: {exc}") from exc
