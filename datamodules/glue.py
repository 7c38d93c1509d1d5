"""GLUE (paper Appendix E, Table 9): eight English tasks, each its own head (`GlueClassifier`).

Hub: `nyu-mll/glue`, one config per task; every row also has `idx`. Test labels are not public (-1), so the
validation split doubles as test (MNLI: validation_matched). Scores: `glue_metrics(task)` (the paper reports
accuracy for the seven classification tasks and Pearson correlation for STS-B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datamodules.hf_base import TextClassificationTask


@dataclass(frozen=True)
class GlueSpec:
    """A GLUE config's text columns, label count (1 = regression) and validation split."""

    text_fields: tuple[str, ...]
    num_labels: int
    val_split: str = "validation"


# Fields from the nyu-mll/glue dataset card.
GLUE_SPECS: dict[str, GlueSpec] = {
    "cola": GlueSpec(("sentence",), 2),  # 0 unacceptable, 1 acceptable
    "sst2": GlueSpec(("sentence",), 2),  # 0 negative, 1 positive
    "mrpc": GlueSpec(("sentence1", "sentence2"), 2),  # 0 not_equivalent, 1 equivalent
    "qqp": GlueSpec(("question1", "question2"), 2),  # 0 not_duplicate, 1 duplicate
    "stsb": GlueSpec(("sentence1", "sentence2"), 1),  # similarity score in [0, 5]
    "mnli": GlueSpec(("premise", "hypothesis"), 3, "validation_matched"),  # entailment, neutral, contradiction
    "qnli": GlueSpec(("question", "sentence"), 2),  # 0 entailment, 1 not_entailment
    "rte": GlueSpec(("sentence1", "sentence2"), 2),  # 0 entailment, 1 not_entailment
    "wnli": GlueSpec(("sentence1", "sentence2"), 2),  # 0 not_entailment, 1 entailment
}
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

    def metric_options(self) -> dict[str, Any]:
        """GLUE's metrics for this config, whatever the task is named."""
        return {"glue_task": self.task}
