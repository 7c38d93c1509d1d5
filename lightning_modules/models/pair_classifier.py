"""GLUE (paper Appendix E): a shared encoder with one head per task, each with its own output size.

`EncoderClassifier` serves MNLI -> XNLI (one shared 3-way head) but gives every per-task head the same number of
classes and has no regression head. GLUE mixes 2-way and 3-way (MNLI) classification with STS-B regression, so
`GlueClassifier` sizes each head by its task (1 output = regression, trained with mean squared error) and scores
each task with `glue_metrics(task)`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from lightning_modules.metrics import glue_metrics
from lightning_modules.metrics.glue import canonical_task
from lightning_modules.models.base import TaskOutput, refuse_options
from lightning_modules.models.encoder import INPUT_KEYS, EncoderClassifier


def _head_sizes(tasks: list[str], overrides: dict[str, int]) -> dict[str, int]:
    unknown = sorted(set(overrides) - set(tasks))
    if unknown:
        raise ValueError(f"num_labels names tasks {unknown} that are not in tasks={tasks}")
    sizes = {t: overrides[t] if t in overrides else glue_num_labels(t) for t in tasks}
    bad = {t: n for t, n in sizes.items() if n < 1}
    if bad:
        raise ValueError(f"every head needs >= 1 output, got {bad}")
    return sizes


def glue_num_labels(task: str) -> int:
    """Outputs of a GLUE task's head: 1 for STS-B (regression), 3 for MNLI, 2 otherwise."""
    canonical = canonical_task(task)
    return {"stsb": 1, "mnli": 3}.get(canonical, 2)


class GlueClassifier(EncoderClassifier):
    """Encoder -> [CLS] -> dropout -> the task's own linear head; cross-entropy, or MSE for 1-output heads.

    Args:
        tasks: task names, or "data" (the data module's, see `EncoderClassifier`); each must be a GLUE task name
            (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli; "sst-2", "sts-b" etc. are understood), unless
            `num_labels` gives its size.
        backbone / config: as `EncoderClassifier`.
        num_labels: task -> number of outputs, overriding the GLUE default (1 = regression).
        dropout: on the [CLS] state (BERT's 0.1).
    """

    def __init__(
        self,
        tasks: list[str] | Literal["data"],
        backbone: str | None = None,
        config: dict[str, Any] | None = None,
        num_labels: dict[str, int] | None = None,
        dropout: float = 0.1,
    ) -> None:
        overrides = dict(num_labels or {})
        sizes = _head_sizes(tasks, overrides) if tasks != "data" else {}
        super().__init__(backbone=backbone, config=config, num_labels=2, head="per_task", tasks=tasks, dropout=dropout)
        self.label_overrides = overrides
        self.task_num_labels = sizes
        if tasks != "data":
            self._size_heads(sizes)

    def _heads_for(self, tasks: list[str]) -> None:
        """The base's heads, then the sized ones: the random draws of the constructor, in its order."""
        sizes = _head_sizes(tasks, self.label_overrides)
        super()._heads_for(tasks)
        self.task_num_labels = sizes
        self._size_heads(sizes)

    def _size_heads(self, sizes: dict[str, int]) -> None:
        hidden = self.encoder.config.hidden_size
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, n) for t, n in sizes.items()})

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        missing = [k for k in ("input_ids", "labels") if k not in batch]
        if missing:
            raise KeyError(f"task '{task}': batch lacks {missing} (has {sorted(batch)})")
        head = self._head(task)
        inputs = {k: batch[k] for k in INPUT_KEYS if k in batch}
        hidden = self.encoder(**inputs).last_hidden_state[:, 0]
        logits = head(self.dropout(hidden))
        labels = batch["labels"]
        if self.task_num_labels[task] == 1:
            scores = logits.squeeze(-1)
            return TaskOutput(loss=F.mse_loss(scores, labels.float()), preds=scores.detach(), targets=labels)
        return TaskOutput(loss=F.cross_entropy(logits, labels), preds=logits.argmax(dim=-1), targets=labels)

    def eval_metrics(self, task: str, glue_task: str | None = None, **options: Any) -> MetricCollection:
        """GLUE's metrics of `glue_task` (the data's GLUE config, whatever the task is named); without it, of the
        task name."""
        refuse_options(self, task, options)
        return glue_metrics(glue_task or task)
