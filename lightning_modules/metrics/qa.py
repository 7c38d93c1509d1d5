"""Extractive-QA exact match and F1: SQuAD v1.1 (TyDiQA-GoldP, SQuAD) and MLQA (per-language rules).

Predictions are strings, which cannot be synchronised across DDP ranks, so `update()` scores every example
at once and the metric keeps only tensor sums (EM sum, F1 sum, count) reduced with `sum`. The result is the
official scripts' number: the mean over examples of the best score over the gold answers, in percent.

SQuAD v1.1 (`evaluate-v1.1.py`, also used by XTREME for TyDiQA-GoldP): lower-case; drop every character of
`string.punctuation`; replace the words a/an/the (regex `\\b(a|an|the)\\b`) by a space; collapse whitespace.
F1 is the bag-of-tokens F1 on the whitespace tokens of the normalized strings; it is 0 when no token is shared,
including when both normalize to empty (then EM is 1 and F1 is 0, as in v1.1).

MLQA (`mlqa_evaluation_v1.py`), rules reproduced here:
- lower-case first;
- punctuation = `string.punctuation` plus every Unicode character whose category starts with "P"
  (so "¿", "“", "。", "，", "《", "।" go; currency and other symbols outside `string.punctuation`, e.g. "€", stay);
- article removal (regex replaced by a space) per language: en `\\b(a|an|the)\\b`;
  es `\\b(un|una|unos|unas|el|la|los|las)\\b`; vi `\\b(của|là|cái|chiếc|những)\\b`;
  de `\\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\\b`; ar `\\sال^|ال` (the first alternative
  can never match, so every occurrence of "ال" is replaced, also inside a word, as the script does); hi, zh none;
- tokenization: whitespace split for en, es, hi, vi, de, ar; for zh "mixed segmentation": every character in
  U+4E00..U+9FA5 (or punctuation) is its own token, runs of other characters are whitespace-split, so
  "2008年" -> "2008 年";
- tokens are joined by single spaces; EM compares the normalized strings, F1 splits them on whitespace.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric

# ----------------------------------------------------------------------------- SQuAD v1.1
_SQUAD_PUNCT = frozenset(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize_answer(text: str) -> str:
    """SQuAD v1.1 `normalize_answer`: lower, remove punctuation, remove a/an/the, fix whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _SQUAD_PUNCT)
    text = _SQUAD_ARTICLES.sub(" ", text)
    return " ".join(text.split())


# ----------------------------------------------------------------------------- MLQA
_MLQA_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "hi": None,  # Hindi has no formal articles
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
    "zh": None,  # Chinese has no formal articles
}
_WHITESPACE_LANGS = frozenset({"en", "es", "hi", "vi", "de", "ar"})
_MIXED_SEGMENTATION_LANGS = frozenset({"zh"})
MLQA_LANGUAGES: tuple[str, ...] = tuple(sorted(_MLQA_ARTICLES))
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def is_mlqa_punctuation(ch: str) -> bool:
    """The script's PUNCT set: Unicode category P* plus `string.punctuation` (which adds symbols like $ + < = >)."""
    return ch in _SQUAD_PUNCT or unicodedata.category(ch).startswith("P")


def _mixed_segmentation(text: str) -> list[str]:
    """zh tokenization: each CJK character (or punctuation) alone, other runs split on whitespace."""
    tokens: list[str] = []
    run = ""
    for ch in text:
        if _CJK.search(ch) or is_mlqa_punctuation(ch):
            if run:
                tokens.extend(run.split())
                run = ""
            tokens.append(ch)
        else:
            run += ch
    if run:
        tokens.extend(run.split())
    return tokens


def _check_language(language: str) -> None:
    if language not in _MLQA_ARTICLES:
        raise ValueError(f"unknown MLQA language {language!r}; the MLQA script knows {list(MLQA_LANGUAGES)}")


def mlqa_normalize_answer(text: str, language: str) -> str:
    """MLQA `normalize_answer(s, lang)`: lower, remove Unicode punctuation, articles, then tokenize and join."""
    _check_language(language)
    text = text.lower()
    text = "".join(ch for ch in text if not is_mlqa_punctuation(ch))
    articles = _MLQA_ARTICLES[language]
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = _mixed_segmentation(text) if language in _MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(t for t in tokens if t.strip() != "")


# ----------------------------------------------------------------------------- scores
def exact_match_score(prediction: str, ground_truth: str, normalize: Callable[[str], str]) -> float:
    return float(normalize(prediction) == normalize(ground_truth))


def f1_score(prediction: str, ground_truth: str, normalize: Callable[[str], str]) -> float:
    """Bag-of-tokens F1 of the official scripts (0 when no token is shared)."""
    pred_tokens = normalize(prediction).split()
    gold_tokens = normalize(ground_truth).split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _gold_list(target: Any, index: int) -> list[str]:
    """One example's gold answers: a string, a sequence of strings, or a HF `answers` dict with "text"."""
    if isinstance(target, Mapping):
        if "text" not in target:
            raise ValueError(f"example {index}: a gold-answer mapping needs a 'text' key, got keys {list(target)}")
        target = target["text"]
    if isinstance(target, str):
        return [target]
    golds = list(target)
    if not golds:
        raise ValueError(f"example {index} has no gold answer")
    if not all(isinstance(g, str) for g in golds):
        raise TypeError(f"example {index}: gold answers must be strings, got {[type(g).__name__ for g in golds]}")
    return golds


class _QAMetric(Metric):
    """Mean over examples of max-over-golds EM and F1, in percent; tensor sum states (DDP-safe)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    exact_match_sum: torch.Tensor
    f1_sum: torch.Tensor
    total: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("exact_match_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("f1_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def normalize(self, text: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, preds: Sequence[str] | str, targets: Sequence[Any]) -> None:
        """preds: one predicted answer string per example; targets: per example the gold answer(s)."""
        if isinstance(preds, str):
            preds, targets = [preds], [targets]
        preds, targets = list(preds), list(targets)
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} gold-answer entries")
        em = f1 = 0.0
        for i, (pred, target) in enumerate(zip(preds, targets)):
            if not isinstance(pred, str):
                raise TypeError(f"prediction {i} must be a string, got {type(pred).__name__}")
            golds = _gold_list(target, i)
            em += max(exact_match_score(pred, g, self.normalize) for g in golds)
            f1 += max(f1_score(pred, g, self.normalize) for g in golds)
        self.exact_match_sum += em
        self.f1_sum += f1
        self.total += len(preds)

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.clamp(min=1).to(torch.float64)  # no examples -> 0, not NaN
        return {
            "exact_match": (100.0 * self.exact_match_sum / total).float(),
            "f1": (100.0 * self.f1_sum / total).float(),
        }


class SquadMetric(_QAMetric):
    """SQuAD v1.1 exact match and F1 in percent (`{"exact_match", "f1"}`); also TyDiQA-GoldP's metric."""

    def normalize(self, text: str) -> str:
        return squad_normalize_answer(text)


class MLQAMetric(_QAMetric):
    """MLQA exact match and F1 in percent with the language's normalization (`mlqa_evaluation_v1.py`).

    Args:
        language: the context language, one of en es de ar hi vi zh (as the MLQA script requires).
    """

    def __init__(self, language: str, **kwargs: Any) -> None:
        _check_language(language)
        super().__init__(**kwargs)
        self.language = language

    def normalize(self, text: str) -> str:
        return mlqa_normalize_answer(text, self.language)
