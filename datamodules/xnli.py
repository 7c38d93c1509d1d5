"""MNLI (English training data) and XNLI (zero-shot evaluation in 15 languages), paper Table 5.

MNLI: hub `nyu-mll/multi_nli`, splits train (392,702), validation_matched (9,815), validation_mismatched (9,832);
fields promptID, pairID, premise, premise_binary_parse, premise_parse, hypothesis, hypothesis_binary_parse,
hypothesis_parse, genre, label. XNLI: hub `facebook/xnli`, one config per language, splits train (machine-translated
MNLI), validation (2,490) and test (5,010); fields premise, hypothesis, label. Both label 0 = entailment,
1 = neutral, 2 = contradiction, so one shared 3-way head serves every task (`EncoderClassifier`).
"""

from __future__ import annotations

from typing import Any

from datamodules.hf_base import TextClassificationTask

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
XNLI_LANGUAGES: tuple[str, ...] = (
    "ar",
    "bg",
    "de",
    "el",
    "en",
    "es",
    "fr",
    "hi",
    "ru",
    "sw",
    "th",
    "tr",
    "ur",
    "vi",
    "zh",
)


class MNLITask(TextClassificationTask):
    """MNLI as one training task (name "mnli" unless given): premise/hypothesis pairs, 3 classes, max length 128,
    batch 32 (paper §4.3). Validation (and, by default, test) is validation_matched."""

    def __init__(
        self,
        tokenizer: str,
        name: str = "mnli",
        *,
        path: str | None = "nyu-mll/multi_nli",
        val_split: str | None = "validation_matched",
        test_split: str | None = "validation_matched",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            tokenizer: as in `HFTaskDataModule`.
            name: the task name.
            path: the hub dataset.
            val_split, test_split: validation_matched (no public test labels).
            **kwargs: the loading arguments of `HFTaskDataModule`.
        """
        super().__init__(
            name=name,
            tokenizer=tokenizer,
            text_fields=["premise", "hypothesis"],
            label_field="label",
            regression=False,
            path=path,
            val_split=val_split,
            test_split=test_split,
            **kwargs,
        )


class XNLITask(TextClassificationTask):
    """One XNLI language as a task (name "xnli_<language>" unless given); evaluation only by default
    (train_split None: XNLI's training split is machine-translated MNLI, not used in the zero-shot setting)."""

    def __init__(
        self,
        language: str,
        tokenizer: str,
        name: str | None = None,
        *,
        path: str | None = "facebook/xnli",
        config_name: str | None = None,
        train_split: str | None = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            language: the language code (the hub config, unless `config_name` is given).
            tokenizer: as in `HFTaskDataModule`.
            name: the task name (default "xnli_<language>").
            path, config_name: the hub dataset and its config.
            train_split: None (zero-shot evaluation).
            **kwargs: the loading arguments of `HFTaskDataModule`.
        """
        if language not in XNLI_LANGUAGES:
            raise ValueError(f"unknown XNLI language {language!r}; known: {', '.join(XNLI_LANGUAGES)}")
        super().__init__(
            name=name or f"xnli_{language}",
            tokenizer=tokenizer,
            text_fields=["premise", "hypothesis"],
            label_field="label",
            regression=False,
            path=path,
            config_name=config_name or language,
            train_split=train_split,
            **kwargs,
        )
        self.language = language
