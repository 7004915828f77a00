"""Read a GGUF file's header metadata (no tensors) to check a file and estimate its memory.

A tiny reader of our own instead of the `gguf` package: we need a few scalar keys, it must be fast
(the tokenizer arrays are skipped, not decoded) and it doubles as a corruption check.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"

# GGUF value types -> struct format of a scalar.
_SCALAR = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class GGUFFormatError(ValueError):
    """The bytes are not a readable GGUF header."""


@dataclass(frozen=True)
class GGUFInfo:
    """What the pool needs to know about a model file before loading it."""

    version: int
    tensor_count: int
    metadata: dict[str, Any]

    def get_int(self, key: str, default: int = 0) -> int:
        value = self.metadata.get(key, default)
        return int(value) if isinstance(value, int | float) else default

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer and every position of the context window."""
        arch = self.architecture
        n_layer = self.get_int(f"{arch}.block_count")
        n_embd = self.get_int(f"{arch}.embedding_length")
        n_head = self.get_int(f"{arch}.attention.head_count", 1) or 1
        n_head_kv = self.get_int(f"{arch}.attention.head_count_kv", n_head) or n_head
        head_k = self.get_int(f"{arch}.attention.key_length", n_embd // n_head)
        head_v = self.get_int(f"{arch}.attention.value_length", n_embd // n_head)
        return n_layer * n_ctx * n_head_kv * (head_k + head_v) * 2

    @property
    def head_count(self) -> int:
        return self.get_int(f"{self.architecture}.attention.head_count", 1)

    @property
    def vocab_size(self) -> int:
        return int(self.metadata.get("tokenizer.ggml.tokens.count", 0))


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFFormatError("header is truncated")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.take("<Q")
        if self.pos + length > len(self.buf):
            raise GGUFFormatError("header is truncated")
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.take("<Q")
        self.pos += length

    def value(self, vtype: int, key: str, meta: dict[str, Any]) -> Any:
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.take("<I")
            count = self.take("<Q")
            meta[f"{key}.count"] = count
            if item_type in _SCALAR:
                self.pos += struct.calcsize(_SCALAR[item_type]) * count
            elif item_type == _STRING:
                for _ in range(count):
                    self.skip_string()
            else:
                raise GGUFFormatError(f"unsupported array item type {item_type} in {key}")
            if self.pos > len(self.buf):
                raise GGUFFormatError("header is truncated")
            return None
        raise GGUFFormatError(f"unknown value type {vtype} in {key}")


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header; raises GGUFFormatError for anything that is not a sane GGUF file."""
    with path.open("rb") as fh:
        try:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # empty file
            raise GGUFFormatError("file is empty") from exc
    with buf:
        if buf[:4] != GGUF_MAGIC:
            raise GGUFFormatError("not a GGUF file (bad magic bytes)")
        cur = _Cursor(buf)
        cur.pos = 4
        version = cur.take("<I")
        if version not in (2, 3):
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        tensor_count = cur.take("<Q")
        kv_count = cur.take("<Q")
        if kv_count > 1_000_000 or tensor_count > 10_000_000:
            raise GGUFFormatError("implausible header counts")
        meta: dict[str, Any] = {}
        for _ in range(kv_count):
            key = cur.string()
            vtype = cur.take("<I")
            value = cur.value(vtype, key, meta)
            if value is not None:
                meta[key] = value
    return GGUFInfo(version=version, tensor_count=tensor_count, metadata=meta)
