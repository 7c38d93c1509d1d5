"""MNLI (English training data) and XNLI (zero-shot evaluation in 15 languages), paper Table 5.

MNLI: hub `nyu-mll/multi_nli`, splits train (392,702), validation_matched (9,815), validation_mismatched (9,832);
fields promptID, pairID, premise, premise_binary_parse, premise_parse, hypothesis, hypothesis_binary_parse,
hypothesis_parse, genre, label. XNLI: hub `facebook/xnli`, one config per language, splits train (machine-translated
MNLI), validation (2,490) and test (5,010); fields premise, hypothesis, label. Both label 0 = entailment,
1 = neutral, 2 = contradiction, so one shared 3-way head serves every task (`EncoderClassifier`).

Files as distributed also work: MultiNLI 1.0 jsonl (sentence1, sentence2, gold_label names; rows whose gold label
is "-" are dropped), XNLI-1.0 tsv or jsonl (all 15 languages in one file, column `language`: each XNLI task keeps
its own rows, so the languages may share the file) and XNLI-MT 1.0 tsv (premise, hypo, label, with
"contradictory"). Label names are mapped to the ids above.
"""

from __future__ import annotations

from typing import Any

from datamodules.file_formats import file_columns
from datamodules.hf_base import TextClassificationTask
from datamodules.hf_loading import Kind

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
# Other names of the classes in the files (XNLI-MT writes "contradictory").
NLI_LABEL_ALIASES: dict[str, int] = {"contradictory": 2}
# Column names of MultiNLI / XNLI-1.0 (sentence1, sentence2, gold_label) and XNLI-MT (hypo) -> the hub's.
NLI_FILE_COLUMNS: dict[str, str] = {
    "sentence1": "premise",
    "sentence2": "hypothesis",
    "hypo": "hypothesis",
    "gold_label": "label",
}
# The column of XNLI-1.0's files that names each row's language.
LANGUAGE_COLUMN = "language"
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
        read_nli_files(self)


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
        read_nli_files(self)

    def single_language_files(self) -> tuple[str | None, list[str]]:
        """Files with a `language` column hold every language (XNLI-1.0), and this task selects its rows: they
        may be shared, so they are not reported."""
        language, files = super().single_language_files()
        return language, [f for f in files if LANGUAGE_COLUMN not in (file_columns(f) or ())]

    def prepare_raw(self, raw: Any, split: str, kind: Kind) -> Any:
        if LANGUAGE_COLUMN in raw.column_names:
            raw = self.select_language(raw, split)
        return super().prepare_raw(raw, split, kind)

    def select_language(self, raw: Any, split: str) -> Any:
        """This task's rows of a file that holds every XNLI language (XNLI-1.0); refused when it has none."""
        language = self.language
        seen = sorted(str(code) for code in raw.unique(LANGUAGE_COLUMN))
        if language not in seen:
            raise ValueError(
                f"task '{self.name}' (language {language}): split '{split}' of {self.split_source(split)} has no "
                f"rows of language {language} (column '{LANGUAGE_COLUMN}' has {', '.join(seen)}); give this task "
                "a file that holds its language"
            )
        return raw.filter(
            lambda batch: [code == language for code in batch[LANGUAGE_COLUMN]],
            batched=True,
            desc=f"{self.name}: rows of language {language}",
        )


def read_nli_files(task: TextClassificationTask) -> None:
    """Let an NLI task read MultiNLI / XNLI files: their column names and label names."""
    task.label_names = NLI_LABELS
    task.label_aliases = dict(NLI_LABEL_ALIASES)
    task.column_renames = dict(NLI_FILE_COLUMNS)
