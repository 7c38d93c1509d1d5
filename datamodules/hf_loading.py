"""Loading and batching for the Hugging Face dataset families: a split from the hub or from files, the `Encoder`
contract of the tokenization, padding collate."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from datamodules.file_formats import FILE_BUILDERS, suffix_of, tsv_options
from pretrained.tokenizers import load_tokenizer

DataFiles = Mapping[str, "str | Sequence[str]"]
Kind = Literal["train", "eval"]

IGNORE_INDEX = -100  # label of positions that take no loss (sub-tokens, special tokens, padding)


@dataclass(frozen=True)
class Encoder:
    """Tokenizes batches of raw rows into features: `encoder(batch, indices, kind=...)`, as `Dataset.map` calls
    it. A small frozen dataclass (the tokenizer by name, loaded once per process) so that it pickles cheaply for
    `num_proc > 1` and its fields are the encoding parameters in the cache fingerprint."""

    tokenizer: str
    max_length: int

    #: bump when the output changes meaning, so cached features are not reused
    VERSION = "1"

    @property
    def tok(self) -> Any:
        return load_tokenizer(self.tokenizer)

    def params(self) -> dict[str, Any]:
        """What decides the output besides the tokenizer's content and the raw data."""
        fields = dataclasses.asdict(self)
        fields.pop("tokenizer")
        return {"encoder": type(self).__qualname__, "version": self.VERSION, **fields}

    def __call__(self, batch: dict[str, list[Any]], indices: list[int], kind: Kind) -> dict[str, list[Any]]:
        raise NotImplementedError  # pragma: no cover


# ---------------------------------------------------------------------------------------------------------------
# Loading a split.
# ---------------------------------------------------------------------------------------------------------------
def builder_for(files: str | Sequence[str]) -> str:
    """The packaged `datasets` builder ("parquet", "json" or "csv") for a file or a list of files of one format."""
    names = [files] if isinstance(files, str) else list(files)
    if not names:
        raise ValueError("an empty list of data files")
    builders = set()
    for name in names:
        suffix = suffix_of(str(name))
        if suffix is None:
            raise ValueError(f"data file '{name}' is not one of {', '.join(FILE_BUILDERS)}")
        builders.add(FILE_BUILDERS[suffix])
    if len(builders) > 1:
        raise ValueError(f"data files of one split must share a format, got {sorted(builders)} in {names}")
    return builders.pop()


_RAW_SPLITS: dict[str, Any] = {}


def load_split(
    split: str,
    *,
    path: str | None = None,
    config_name: str | None = None,
    revision: str | None = None,
    data_files: DataFiles | None = None,
    data_field: str | None = None,
    cache_dir: str | None = None,
    builder: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """One split as a `datasets.Dataset`: from `data_files[split]` when files are given, else from the hub.

    `data_files` maps the hub's split names ("train", "validation", "validation_matched", ...) to files, so a
    local copy is addressed exactly like the hub split it copies. `data_field`: the key of the record list in a
    json file whose top level is an object (SQuAD-format files: "data"). `builder`: the packaged builder when the
    family reads a suffix its own way (WikiANN's `.tsv` is PAN-X's token-per-line text); by default it follows
    the suffix. `options`: more builder options (for tab-separated files, `column_names` of a file without a
    header line).

    Loaded splits are kept for the process (memory-mapped, so cheap): the nine TyDiQA tasks read the same split,
    and each `load_dataset` call asks the hub whether the dataset changed."""
    import datasets

    if data_files is not None:
        if split not in data_files:
            raise KeyError(f"no data file for split '{split}': data_files has {sorted(data_files)}")
        files = data_files[split]
        files = [str(files)] if isinstance(files, (str, os.PathLike)) else [str(f) for f in files]
        builder = builder or builder_for(files)
        kwargs: dict[str, Any] = dict(options or {})
        column_names = kwargs.pop("column_names", None)  # of a tsv without header; other formats name their columns
        if builder == "csv":
            kwargs = {**tsv_options(files, column_names), **kwargs}
        if data_field is not None:
            if builder != "json":
                raise ValueError(f"data_field only applies to json files, not {builder} ({files})")
            kwargs["field"] = data_field
        stamps = [os.stat(f).st_mtime_ns if os.path.exists(f) else None for f in files]
        key = repr((builder, split, files, stamps, data_field, cache_dir, sorted(kwargs.items())))
        if key not in _RAW_SPLITS:
            try:
                _RAW_SPLITS[key] = datasets.load_dataset(
                    builder, data_files={split: files}, split=split, cache_dir=cache_dir, **kwargs
                )
            except datasets.exceptions.DatasetGenerationError as error:
                cause = error.__cause__ or error
                raise ValueError(
                    f"split '{split}': cannot read {files} with the {builder} builder: {cause}".rstrip()
                ) from error
        return _RAW_SPLITS[key]
    if path is None:
        raise ValueError("give either a hub dataset `path` or `data_files`")
    key = repr((path, config_name, split, revision, cache_dir))
    if key not in _RAW_SPLITS:
        _RAW_SPLITS[key] = datasets.load_dataset(path, config_name, split=split, revision=revision, cache_dir=cache_dir)
    return _RAW_SPLITS[key]


def split_source(data_files: DataFiles | None, split: str, otherwise: str) -> str:
    """The files of one split, for messages ("file a.tsv", "files [...]"); `otherwise` when it has none."""
    if data_files is None or split not in data_files:
        return otherwise
    files = data_files[split]
    return f"file {files}" if isinstance(files, (str, os.PathLike)) else f"files {[str(f) for f in files]}"


def pad_collate(features: list[dict[str, Any]], pad_values: Mapping[str, int]) -> dict[str, Any]:
    """Batch a list of feature dicts: keys in `pad_values` are sequences padded to the longest (nested pairs such
    as offsets become [B, L, 2]); numbers become a tensor; anything else (strings, lists of strings) stays a list."""
    if not features:
        raise ValueError("cannot collate an empty list of features")
    batch: dict[str, Any] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if key in pad_values:
            batch[key] = pad_sequences(values, pad_values[key])
        elif all(isinstance(v, (bool, int, float)) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


def pad_sequences(rows: Sequence[Sequence[Any]], pad_value: int) -> torch.Tensor:
    """[B] rows of length L_i (of numbers, or of equal-length number tuples) -> [B, max L_i(, k)], padded."""
    tensors = [torch.as_tensor(row) for row in rows]
    longest = max(t.shape[0] for t in tensors)
    trailing = next((t.shape[1:] for t in tensors if t.numel()), tensors[0].shape[1:])
    dtype = next((t.dtype for t in tensors if t.numel()), torch.long)
    out = torch.full((len(tensors), longest, *trailing), pad_value, dtype=dtype)
    for i, t in enumerate(tensors):
        if t.numel():
            out[i, : t.shape[0]] = t
    return out
