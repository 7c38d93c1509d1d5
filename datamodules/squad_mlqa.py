"""SQuAD v1.1 (English training data, paper Table 4) and MLQA (zero-shot evaluation, Tables 3 and 4).

SQuAD: hub `rajpurkar/squad` (config `plain_text`), splits train (87,599) and validation (10,570), fields id,
title, context, question, answers{text[], answer_start[]}; validation doubles as test (no public test split).
Offline: parquet/json(l) copies, or the official `train-v1.1.json` / `dev-v1.1.json` with `data_field: data`.

MLQA: contexts and questions in seven languages (ar de en es hi vi zh), validation and test splits only, the same
fields as SQuAD. The hub repository `facebook/mlqa` is a loading script, which recent `datasets` refuse to run, so
by default the splits are read from the hub's automatic parquet conversion (the `refs/convert/parquet` revision,
`<config>/<split>/*.parquet`, configs named `mlqa.<context language>.<question language>`). Offline: the official
files (`MLQA_V1/test/test-context-de-question-de.json`, SQuAD format) with `data_field: data`, or parquet copies.
Scored with the MLQA script's per-language normalization (`MLQAMetric(context language)`).
"""

from __future__ import annotations

from typing import Any

from datamodules.hf_qa import ExtractiveQATask

MLQA_LANGUAGES: tuple[str, ...] = ("ar", "de", "en", "es", "hi", "vi", "zh")
# The hub's parquet conversion of a script dataset: one folder per config, one per split inside.
PARQUET_EXPORT = "hf://datasets/{path}@refs%2Fconvert%2Fparquet/{config}/{split}/*.parquet"


class SquadTask(ExtractiveQATask):
    """SQuAD v1.1 as one training task (name "squad" unless given). Windows of 384 tokens, stride 128, batch 12
    (the paper uses its QA hyperparameters for SQuAD -> MLQA)."""

    def __init__(
        self,
        tokenizer: str,
        name: str = "squad",
        *,
        path: str | None = "rajpurkar/squad",
        config_name: str | None = "plain_text",
        test_split: str | None = "validation",
        **kwargs: Any,
    ) -> None:
        """
        Args:
            tokenizer: as in `HFTaskDataModule`.
            name: the task name.
            path, config_name: the hub dataset.
            test_split: validation (there is no public test split).
            **kwargs: the arguments of `ExtractiveQATask` and `HFTaskDataModule`.
        """
        super().__init__(
            name=name, tokenizer=tokenizer, path=path, config_name=config_name, test_split=test_split, **kwargs
        )


class MLQATask(ExtractiveQATask):
    """One MLQA language pair as an (evaluation) task; name "mlqa_<language>" unless given.

    Args:
        language: the context language (decides the metric's normalization).
        question_language: the question language (default: the same, as in the paper's tables).
        parquet_export: with no `data_files`, read the hub's parquet conversion of `path` (see the module
            docstring); False loads `path`/`config_name` with `load_dataset` (for a repository in a standard
            format, e.g. `google/xtreme` with config `MLQA.de.de`).
        name: the task name (default "mlqa_<language>").
        path, config_name, revision, data_files, train_split, val_split, test_split: as in `HFTaskDataModule`
            (config default "mlqa.<language>.<question_language>"); MLQA has no training split.
        **kwargs: the other arguments of `ExtractiveQATask` and `HFTaskDataModule`.
    """

    def __init__(
        self,
        language: str,
        tokenizer: str,
        question_language: str | None = None,
        name: str | None = None,
        *,
        path: str | None = "facebook/mlqa",
        config_name: str | None = None,
        revision: str | None = None,
        parquet_export: bool = True,
        data_files: dict[str, str | list[str]] | None = None,
        train_split: str | None = None,
        val_split: str | None = "validation",
        test_split: str | None = "test",
        **kwargs: Any,
    ) -> None:
        question_language = question_language or language
        for role, lang in (("language", language), ("question_language", question_language)):
            if lang not in MLQA_LANGUAGES:
                raise ValueError(f"unknown MLQA {role} {lang!r}; known: {', '.join(MLQA_LANGUAGES)}")
        config_name = config_name or f"mlqa.{language}.{question_language}"
        if data_files is None and parquet_export:
            if path is None:
                raise ValueError("MLQATask: parquet_export needs the hub repository `path`")
            if revision is not None:
                raise ValueError("MLQATask: `revision` does not apply to the parquet export (refs/convert/parquet)")
            splits = [s for s in (train_split, val_split, test_split) if s is not None]
            data_files = {s: PARQUET_EXPORT.format(path=path, config=config_name, split=s) for s in splits}
        super().__init__(
            name=name or f"mlqa_{language}",
            tokenizer=tokenizer,
            path=path,
            config_name=config_name,
            revision=revision,
            data_files=data_files,
            train_split=train_split,
            val_split=val_split,
            test_split=test_split,
            **kwargs,
        )
        self.language = language
        self.question_language = question_language

    def metric_options(self) -> dict[str, Any]:
        """MLQA's evaluation script normalizes answers by the context language."""
        return {"mlqa_language": self.language}
