"""What the Hugging Face dataset families share: one loading path, cached tokenization, padding collate.

A split comes either from the hub (`datasets.load_dataset(path, config_name, split=...)`) or from files
(`data_files`: parquet, json, jsonl or tsv, local paths or `hf://` URLs, loaded with the `datasets` packaged builder
of the suffix, `file_formats.py`; WikiANN reads PAN-X text with the text builder, `panx.py`); from there on both go
through the same code: the family's `prepare_raw` (file column and label names -> the hub's, filter a language,
flatten SQuAD-format json, drop unusable rows), then `Dataset.map` with the
family's `encode`. The map is cached by `datasets` under a fingerprint made of the raw split's fingerprint, the
tokenizer's full serialisation and the encoding parameters, so a second run (or the other DDP ranks after rank 0's
`prepare_data`) reads the tokenized features from disk.

Three bases: `HFTaskDataModule` (everything above, `hf_task.py`, over `hf_loading.py`), `ExtractiveQATask`
(question + passage windows, span positions, evaluation features grouped by example, `hf_qa.py`) and
`TextClassificationTask` (one text or a text pair, a class id or a regression score), here. Also here: the
functions `datasets` fingerprints by module and name or by file (the QA raw-row helpers, the classification
filter), which must stay in this file for cached splits to be found again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from datamodules.hf_loading import (  # noqa: F401 - the names importers use
    FILE_BUILDERS,
    IGNORE_INDEX,
    DataFiles,
    Encoder,
    Kind,
    builder_for,
    load_split,
    pad_collate,
    pad_sequences,
    split_source,
)
from datamodules.hf_task import HFTaskDataModule
from datamodules.label_names import label_ids, scores
from pretrained.tokenizers import load_tokenizer  # noqa: F401

# ---------------------------------------------------------------------------------------------------------------
# Extractive QA (TyDiQA gold passage, SQuAD, MLQA).
# ---------------------------------------------------------------------------------------------------------------
QA_COLUMNS = ("id", "context", "question", "answers")


def flatten_squad_json(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Official SQuAD-format records (title, paragraphs[context, qas[id, question, answers[text, answer_start]]])
    -> one row per question in the hub schema: id, title, context, question, answers{text[], answer_start[]}."""
    rows: dict[str, list[Any]] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for title, paragraphs in zip(batch.get("title", [""] * len(batch["paragraphs"])), batch["paragraphs"]):
        for paragraph in paragraphs:
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or []
                rows["id"].append(str(qa["id"]))
                rows["title"].append(title or "")
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append(
                    {"text": [a["text"] for a in answers], "answer_start": [int(a["answer_start"]) for a in answers]}
                )
    return rows


def _answer_dict(answers: Any, example_id: Any) -> dict[str, list[Any]]:
    """The hub schema's answers{text[], answer_start[]}, also accepting a list of {text, answer_start} dicts."""
    if isinstance(answers, Mapping):
        texts, starts = list(answers.get("text") or []), list(answers.get("answer_start") or [])
    elif isinstance(answers, list):
        texts = [a["text"] for a in answers]
        starts = [a["answer_start"] for a in answers]
    else:
        raise ValueError(f"example {example_id}: answers must be {{text: [...], answer_start: [...]}}, got {answers!r}")
    if len(texts) != len(starts):
        raise ValueError(f"example {example_id}: {len(texts)} answer texts but {len(starts)} answer_start values")
    return {"text": texts, "answer_start": starts}


def _answer_matches(row: dict[str, Any]) -> bool:
    answers = _answer_dict(row["answers"], row["id"])
    if not answers["text"]:
        return True  # no answer: every window points at [CLS]
    start = int(answers["answer_start"][0])
    text = answers["text"][0]
    return start >= 0 and row["context"][start : start + len(text)] == text


# ---------------------------------------------------------------------------------------------------------------
# Sentence and sentence-pair classification / regression (MNLI, XNLI, GLUE).
# ---------------------------------------------------------------------------------------------------------------
class TextClassificationTask(HFTaskDataModule):
    """One text (`text_fields=[a]`) or a pair (`[a, b]`) -> class id (or a float score with `regression`).

    Rows with a negative label (GLUE's unlabelled test splits use -1) are dropped from classification splits.
    Files in another layout (MultiNLI jsonl, XNLI and GLUE tsv) are read through `column_renames` (their column
    names -> the hub's), `label_names` (label names -> ids) and `headerless_columns` (a tsv without header), which
    the families set.
    """

    def __init__(
        self,
        name: str,
        tokenizer: str,
        text_fields: list[str],
        label_field: str = "label",
        regression: bool = False,
        *,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            name: the task name.
            tokenizer: as in `HFTaskDataModule`.
            text_fields: the column of the text, or the two columns of a pair.
            label_field: the column of the class id (or score).
            regression: a float score (STS-B) instead of a class id.
            batch_size: training examples per batch (paper §4.3: 32).
            **kwargs: the loading arguments of `HFTaskDataModule`.
        """
        super().__init__(name=name, tokenizer=tokenizer, batch_size=batch_size, **kwargs)
        if len(text_fields) not in (1, 2):
            raise ValueError(f"task '{name}': text_fields must name one or two columns, got {text_fields}")
        self.text_fields = list(text_fields)
        self.label_field = label_field
        self.regression = regression
        self.REQUIRED_COLUMNS = (*self.text_fields, label_field)
        #: the class names in id order; a label column of strings is mapped by these names (see `label_ids`)
        self.label_names: tuple[str, ...] = ()
        #: other names of a class ({"contradictory": 2}: XNLI-MT)
        self.label_aliases: dict[str, int] = {}
        #: file column name -> hub column name, applied when the hub's name is absent (MultiNLI's "gold_label")
        self.column_renames: dict[str, str] = {}
        #: the columns of a tab-separated file without a header line (GLUE's CoLA)
        self.headerless_columns: tuple[str, ...] = ()

    def encoder(self) -> ClassificationEncoder:
        return ClassificationEncoder(
            self.tokenizer_name, self.max_length, tuple(self.text_fields), self.label_field, self.regression
        )

    def load_options(self) -> dict[str, Any] | None:
        return {"column_names": self.headerless_columns} if self.headerless_columns else None

    def split_source(self, split: str) -> str:
        """The files (or hub dataset) of one split, for messages."""
        return split_source(self.data_files, split, self.source())

    def prepare_raw(self, raw: Any, split: str, kind: Kind) -> Any:
        from datasets import Value

        raw, renamed = rename_absent(raw, self.column_renames)
        self.check_columns(raw, split)
        for field in self.text_fields:
            if getattr(raw.features[field], "dtype", "string") not in ("string", "large_string"):
                raw = raw.cast_column(field, Value("string"))
        label = self.label_field
        where = (
            f"task '{self.name}': split '{split}' of {self.split_source(split)}, column '{renamed.get(label, label)}'"
        )
        if self.regression:
            return scores(raw, label, where)
        raw = label_ids(raw, label, self.label_names, self.label_aliases, where)
        before = len(raw)
        raw = raw.filter(lambda row: row[label] is not None and row[label] >= 0, desc=f"{self.name}: labelled rows")
        if len(raw) < before:
            rank_zero_info(f"task '{self.name}': split '{split}': dropped {before - len(raw)} unlabelled rows")
        return raw


def rename_absent(raw: Any, renames: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """Columns renamed from a file format's names to the hub's (`{"gold_label": "label"}`), each only when the
    hub's name is absent and the file's is present (the first of several file names for one hub name). Returns
    the dataset and {hub name: file name} of the renames, for messages."""
    applied: dict[str, str] = {}
    for old, new in renames.items():
        if old in raw.column_names and new not in raw.column_names and new not in applied.values():
            applied[old] = new
    return (raw.rename_columns(applied) if applied else raw), {new: old for old, new in applied.items()}


@dataclass(frozen=True)
class ClassificationEncoder(Encoder):
    """One text or a text pair -> input ids and an int class (or a float score)."""

    text_fields: tuple[str, ...] = ("sentence",)
    label_field: str = "label"
    regression: bool = False

    def __call__(self, batch: dict[str, list[Any]], indices: list[int], kind: Kind) -> dict[str, list[Any]]:
        texts = [[t if t is not None else "" for t in batch[field]] for field in self.text_fields]
        encoded = self.tok(*texts, truncation=True, max_length=self.max_length, padding=False)
        out = {k: list(v) for k, v in encoded.items()}
        labels = batch[self.label_field]
        out["labels"] = [float(v) for v in labels] if self.regression else [int(v) for v in labels]
        return out
