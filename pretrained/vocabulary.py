"""What a model's vocabulary may be trimmed to: the token ids of the corpora in use. Defined below the models and
the data so that both use it: the data's tasks describe their corpus (`datamodules.bible_vocab.BibleVocabulary`),
the model trims to it (`EncoderClassifier(vocabulary=...)`)."""

from __future__ import annotations

from typing import Any


class Vocabulary:
    """The token ids a model's vocabulary is trimmed to (`EncoderClassifier(vocabulary=...)`): those of the
    corpora in use, seen and unseen languages alike. Subclasses: `datamodules.bible_vocab.BibleVocabulary`,
    `TokenIdsVocabulary`, `UnionVocabulary`."""

    def token_ids(self, tokenizer: Any) -> list[int]:  # pragma: no cover - interface
        """Ids `tokenizer` produces for the corpora (special tokens are always kept on top)."""
        raise NotImplementedError

    def join(self, other: Vocabulary) -> Vocabulary | None:
        """One vocabulary of both corpora when this kind can hold them (one cache entry instead of two), else
        None (they are then combined by `UnionVocabulary`)."""
        return None


class UnionVocabulary(Vocabulary):
    """The ids of several vocabularies (e.g. tasks reading different databases or translations)."""

    def __init__(self, parts: list[Vocabulary]) -> None:
        if not parts:
            raise ValueError("UnionVocabulary needs at least one vocabulary")
        self.parts = list(parts)

    def token_ids(self, tokenizer: Any) -> list[int]:
        return sorted({int(i) for part in self.parts for i in part.token_ids(tokenizer)})

    def __repr__(self) -> str:
        return f"UnionVocabulary({self.parts!r})"


def combine_vocabularies(vocabularies: list[Vocabulary]) -> Vocabulary | None:
    """The vocabulary of all these corpora: joined where their kind allows it, else a union; None for none."""
    merged: list[Vocabulary] = []
    for vocabulary in vocabularies:
        for i, known in enumerate(merged):
            joined = known.join(vocabulary)
            if joined is not None:
                merged[i] = joined
                break
        else:
            merged.append(vocabulary)
    if not merged:
        return None
    return merged[0] if len(merged) == 1 else UnionVocabulary(merged)


class TokenIdsVocabulary(Vocabulary):
    """An explicit list of token ids (e.g. from `pretrained.vocab_trim.collect_token_ids` over one's own texts)."""

    def __init__(self, ids: list[int]) -> None:
        if not ids:
            raise ValueError("TokenIdsVocabulary needs at least one token id")
        self.ids = sorted({int(i) for i in ids})

    def token_ids(self, tokenizer: Any) -> list[int]:
        return self.ids
