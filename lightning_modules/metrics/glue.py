"""GLUE metrics (and XNLI, which is MNLI's accuracy) as torchmetrics objects, with GLUE's numbers.

`glue_metrics(task)` gives the keys the GLUE benchmark reports (as HF `evaluate`'s "glue" metric names them),
plus accuracy on every classification task, which is what the paper's Table 9 reports (accuracy on the seven
classification tasks, Pearson on STS-B):

    cola                    matthews_correlation, accuracy
    sst2 qnli rte wnli      accuracy
    mnli (matched), mnli_mismatched, xnli   accuracy (3 classes)
    mrpc qqp                accuracy, f1 (binary, positive class 1)
    stsb                    pearson, spearmanr

Inputs are what a classification head gives: logits [N, C] (argmax is taken) or class ids [N], and integer
targets [N]; STS-B takes scores [N] (or [N, 1]) and float targets. Accuracy and F1 are torchmetrics'; Matthews,
Pearson and Spearman (average ranks for ties) are `metrics/correlation.py`'s, which give scikit-learn's / scipy's
numbers (those GLUE uses) also where a correlation is undefined: MCC 0, and Pearson / Spearman NaN for constant
predictions or targets. Their states carry their own DDP reductions (sums, concatenation). Accuracy and F1 are
fractions in [0, 1], correlations in [-1, 1].
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy

from lightning_modules.metrics.correlation import MatthewsCorrelation, PearsonCorrelation, SpearmanCorrelation


def class_ids(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logits [N, C] -> argmax ids [N]; integer ids [N] pass through; anything else is an error."""
    if preds.is_floating_point():
        if preds.dim() != target.dim() + 1:
            raise ValueError(
                f"classification preds must be logits [N, C] or class ids [N]; got float preds of shape "
                f"{tuple(preds.shape)} for targets of shape {tuple(target.shape)}"
            )
        return preds.argmax(dim=-1)
    if preds.shape != target.shape:
        raise ValueError(f"class-id preds of shape {tuple(preds.shape)} do not match targets {tuple(target.shape)}")
    return preds


class GlueAccuracy(MulticlassAccuracy):
    """Plain accuracy (micro over examples) from logits or class ids."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, average="micro", **kwargs)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(class_ids(preds, target), target)


class GlueMatthewsCorrCoef(MatthewsCorrelation):
    """Matthews correlation (CoLA) from logits [N, 2] or class ids; 0 where it is undefined (scikit-learn)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(class_ids(preds, target), target)


class GlueF1(BinaryF1Score):
    """F1 of the positive class 1 (MRPC, QQP) from logits [N, 2] or class ids."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(class_ids(preds, target), target)


_NUM_CLASSES = {"cola": 2, "sst2": 2, "mrpc": 2, "qqp": 2, "mnli": 3, "qnli": 2, "rte": 2, "wnli": 2}
_ALIASES = {
    "mnlim": "mnli",
    "mnlimatched": "mnli",
    "mnlimm": "mnli",
    "mnlimismatched": "mnli",
    "xnli": "mnli",
}
GLUE_TASKS: tuple[str, ...] = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


def canonical_task(task_name: str) -> str:
    """'SST-2' -> 'sst2', 'mnli_mismatched' / 'MNLI-mm' / 'xnli' -> 'mnli', 'sts-b' -> 'stsb'."""
    key = re.sub(r"[^a-z0-9]", "", task_name.lower())
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        raise ValueError(
            f"unknown GLUE task {task_name!r}; known: {list(GLUE_TASKS)} (and mnli_matched, mnli_mismatched, xnli)"
        )
    return key


def glue_metrics(task_name: str) -> MetricCollection:
    """The metrics GLUE reports for `task_name`, plus accuracy on classification tasks (paper Table 9)."""
    task = canonical_task(task_name)
    metrics: dict[str, Metric] = {}
    if task == "stsb":
        metrics["pearson"] = PearsonCorrelation()
        metrics["spearmanr"] = SpearmanCorrelation()
        return MetricCollection(metrics, compute_groups=False)
    if task == "cola":
        metrics["matthews_correlation"] = GlueMatthewsCorrCoef()
    metrics["accuracy"] = GlueAccuracy(_NUM_CLASSES[task])
    if task in ("mrpc", "qqp"):
        metrics["f1"] = GlueF1()
    # Compute groups (state sharing between metrics whose states look equal after the first batch) would save
    # a few additions; independent states are simpler to reason about.
    return MetricCollection(metrics, compute_groups=False)
