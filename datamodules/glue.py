"""GLUE (paper Appendix E, Table 9): eight English tasks, each its own head (`GlueClassifier`).

Hub: `nyu-mll/glue`, one config per task; every row also has `idx`. Test labels are not public (-1), so the
validation split doubles as test (MNLI: validation_matched). Scores: `glue_metrics(task)` (the paper reports
accuracy for the seven classification tasks and Pearson correlation for STS-B).

GLUE's own tsv files (from its download script: train.tsv, dev.tsv, MNLI's dev_matched.tsv) are read as they are,
for every task: their column names are mapped to the hub's and their label names ("entailment", "0"/"1") to ids.
Their test.tsv files have no label column (the test labels are hidden) and cannot be read as a task split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.hf_base import TextClassificationTask


@dataclass(frozen=True)
class GlueSpec:
    """A GLUE config's text columns, label count (1 = regression) and validation split; and how GLUE's own tsv
    files write it: the label names in id order, their column names -> the hub's, the columns of a file without a
    header line."""

    text_fields: tuple[str, ...]
    num_labels: int
    val_split: str = "validation"
    label_names: tuple[str, ...] = ()
    tsv_columns: tuple[tuple[str, str], ...] = ()
    headerless: tuple[str, ...] = ()


# Fields and label names from the nyu-mll/glue dataset card; tsv layouts of GLUE's distribution (glue_data/<TASK>/
# train.tsv, dev.tsv, dev_matched.tsv): CoLA has no header (source, label, original label, sentence), MRPC writes
# Quality / #1 String / #2 String, QQP is_duplicate, STS-B score, MNLI sentence1 / sentence2 / gold_label.
GLUE_SPECS: dict[str, GlueSpec] = {
    "cola": GlueSpec(
        ("sentence",), 2, label_names=("unacceptable", "acceptable"),
        headerless=("source", "label", "original_label", "sentence"),
    ),
    "sst2": GlueSpec(("sentence",), 2, label_names=("negative", "positive")),
    "mrpc": GlueSpec(
        ("sentence1", "sentence2"), 2, label_names=("not_equivalent", "equivalent"),
        tsv_columns=(("Quality", "label"), ("#1 String", "sentence1"), ("#2 String", "sentence2")),
    ),
    "qqp": GlueSpec(
        ("question1", "question2"), 2, label_names=("not_duplicate", "duplicate"),
        tsv_columns=(("is_duplicate", "label"),),
    ),
    "stsb": GlueSpec(("sentence1", "sentence2"), 1, tsv_columns=(("score", "label"),)),  # a score in [0, 5]
    "mnli": GlueSpec(
        ("premise", "hypothesis"), 3, "validation_matched", label_names=("entailment", "neutral", "contradiction"),
        tsv_columns=(("sentence1", "premise"), ("sentence2", "hypothesis"), ("gold_label", "label")),
    ),
    "qnli": GlueSpec(("question", "sentence"), 2, label_names=("entailment", "not_entailment")),
    "rte": GlueSpec(("sentence1", "sentence2"), 2, label_names=("entailment", "not_entailment")),
    "wnli": GlueSpec(("sentence1", "sentence2"), 2, label_names=("not_entailment", "entailment")),
}  # fmt: skip
# The eight tasks of the paper's Table 9 (WNLI is left out, as by Pilault et al. 2021).
TABLE9_TASKS: tuple[str, ...] = ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb")


class GlueTask(TextClassificationTask):
    """One GLUE task (name = the config name unless given): max length 128, batch 32.

    Args:
        task: the `nyu-mll/glue` config: cola sst2 mrpc qqp stsb mnli qnli rte wnli.
        tokenizer: as in `HFTaskDataModule`.
        name: the task name (default: the config name).
        path, config_name: the hub dataset and its config (default: `task`).
        val_split / test_split: default: the task's validation split (GLUE's test labels are hidden).
        **kwargs: the loading arguments of `HFTaskDataModule`.
    """

    def __init__(
        self,
        task: str,
        tokenizer: str,
        name: str | None = None,
        *,
        path: str | None = "nyu-mll/glue",
        config_name: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        **kwargs: Any,
    ) -> None:
        if task not in GLUE_SPECS:
            raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(GLUE_SPECS)}")
        spec = GLUE_SPECS[task]
        super().__init__(
            name=name or task,
            tokenizer=tokenizer,
            text_fields=list(spec.text_fields),
            label_field="label",
            regression=spec.num_labels == 1,
            path=path,
            config_name=config_name or task,
            val_split=val_split or spec.val_split,
            test_split=test_split or spec.val_split,
            **kwargs,
        )
        self.task = task
        self.num_labels = spec.num_labels
        self.label_names = spec.label_names
        self.column_renames = dict(spec.tsv_columns)
        self.headerless_columns = spec.headerless

    def metric_options(self) -> dict[str, Any]:
        """GLUE's metrics for this config, whatever the task is named."""
        return {"glue_task": self.task}

    def class_count(self) -> int:
        """The outputs of this config's head (1: STS-B's regression), whatever the task is named."""
        return self.num_labels
