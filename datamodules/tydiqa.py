"""TyDiQA gold passage (paper §4.2, Table 1): extractive QA in nine languages, one task per language.

Hub: `google-research-datasets/tydiqa`, config `secondary_task` (the gold-passage task), splits `train` (49,881
questions) and `validation` (5,077), fields id, title, context, question, answers{text[], answer_start[]}. The
language is the prefix of the example id ("arabic-2387335860751143628-1" -> ar). There is no public test split,
so validation doubles as test (as in XTREME). Offline: the same split as parquet/json(l) files via `data_files`,
or the official SQuAD-format files (`tydiqa-goldp-v1.1-train.json`, `tydiqa-goldp-v1.1-dev.json`) with
`data_field: data`.

Scored with SQuAD v1.1 exact match / F1 (`SquadMetric`), as the TyDiQA gold-passage baseline and XTREME do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.hf_qa import ExtractiveQATask

# Language code -> the id prefix of its examples (the gold-passage task has no Japanese or Thai).
TYDIQA_LANGUAGES: dict[str, str] = {
    "ar": "arabic",
    "bn": "bengali",
    "en": "english",
    "fi": "finnish",
    "id": "indonesian",
    "ko": "korean",
    "ru": "russian",
    "sw": "swahili",
    "te": "telugu",
}


def tydiqa_language(example_id: str) -> str | None:
    """ "arabic-2387335860751143628-1" -> "ar"; None for a prefix that is not a gold-passage language."""
    prefix = str(example_id).split("-", 1)[0].lower()
    return next((code for code, name in TYDIQA_LANGUAGES.items() if name == prefix), None)


@dataclass(frozen=True)
class _IdPrefix:
    """Batched `Dataset.filter` predicate: ids that start with "<prefix>-" (a dataclass, so it hashes stably)."""

    prefix: str

    def __call__(self, batch: dict[str, list[Any]]) -> list[bool]:
        return [str(i).startswith(self.prefix + "-") for i in batch["id"]]


class TyDiQATask(ExtractiveQATask):
    """One TyDiQA gold-passage language as a task (name = the language code unless `name` is given).

    Windows of `max_length` 384 tokens with stride 128 (XTREME's settings), batch size 12 (paper §4.2). See
    `ExtractiveQATask` for the features and `HFTaskDataModule` for the loading arguments.
    """

    SELECTS_LANGUAGE_FROM_ROWS = True

    def __init__(
        self,
        language: str,
        tokenizer: str,
        name: str | None = None,
        *,
        path: str | None = "google-research-datasets/tydiqa",
        config_name: str | None = "secondary_task",
        test_split: str | None = "validation",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            language: the language code (its examples' ids start with the language's name).
            tokenizer: as in `HFTaskDataModule`.
            name: the task name (default: the language code).
            path, config_name: the hub dataset and its gold-passage config.
            test_split: validation (there is no public test split).
            **kwargs: the arguments of `ExtractiveQATask` and `HFTaskDataModule`.
        """
        if language not in TYDIQA_LANGUAGES:
            raise ValueError(f"unknown TyDiQA gold-passage language {language!r}; known: {', '.join(TYDIQA_LANGUAGES)}")
        super().__init__(
            name=name or language,
            tokenizer=tokenizer,
            path=path,
            config_name=config_name,
            test_split=test_split,
            **kwargs,
        )
        self.language = language

    def select_rows(self, raw: Any, split: str) -> Any:
        prefix = TYDIQA_LANGUAGES[self.language]
        rows = raw.filter(_IdPrefix(prefix), batched=True, desc=f"{self.name}: selecting {prefix}")
        if len(rows) == 0:
            found = sorted({str(i).split("-", 1)[0] for i in raw["id"][:1000]})
            raise ValueError(
                f"task '{self.name}': split '{split}' of {self.source()} has no example whose id starts with "
                f"'{prefix}-' (id prefixes seen: {found})"
            )
        return rows
