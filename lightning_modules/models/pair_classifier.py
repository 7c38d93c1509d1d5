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


def _head_sizes(tasks: list[str], overrides: dict[str, int], data: dict[str, int] | None = None) -> dict[str, int]:
    """Each task's outputs: `num_labels`, else what its data defines (a GLUE task's config, whatever the task is
    named), else the GLUE task its name is; `num_labels` that contradicts the data is refused."""
    unknown = sorted(set(overrides) - set(tasks))
    if unknown:
        raise ValueError(f"num_labels names tasks {unknown} that are not in tasks={tasks}")
    data = data or {}
    clash = {t: (overrides[t], data[t]) for t in tasks if t in overrides and t in data and overrides[t] != data[t]}
    if clash:
        raise ValueError(
            "num_labels contradicts the data: "
            + ", ".join(f"task '{t}' num_labels {n}, its data defines {d}" for t, (n, d) in clash.items())
            + "; drop those num_labels entries (the data's count is used)"
        )
    sizes = {t: overrides[t] if t in overrides else data[t] if t in data else glue_num_labels(t) for t in tasks}
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
        tasks: task names, or "data" (the data module's, see `EncoderClassifier`): then each head is sized by
            what its task's data defines (a `GlueTask`'s config, whatever the task is named). A task list sizes a
            head by its name, which must be a GLUE task name (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli;
            "sst-2", "sts-b" etc. are understood) unless `num_labels` gives its size; a head that does not fit
            its data's count is refused when the data is attached.
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

    def attach_data(
        self, task_names: list[str], vocabulary: Any = None, class_counts: dict[str, int] | None = None
    ) -> None:
        """As `EncoderClassifier`'s; the heads are sized by what each task's data defines (a GLUE task's config,
        whatever the task is named). Heads made from a task list in the config must agree with the data."""
        self._data_counts = dict(class_counts or {})
        if not self.tasks_from_data:
            wrong = {
                t: (n, self._data_counts[t])
                for t, n in self.task_num_labels.items()
                if t in self._data_counts and self._data_counts[t] != n
            }
            if wrong:
                raise ValueError(
                    "GlueClassifier: the heads sized from the task names do not fit the data: "
                    + ", ".join(f"'{t}' has {n} outputs, its data defines {d}" for t, (n, d) in wrong.items())
                    + "; set model.init_args.tasks: data (heads sized by the data) or fix num_labels"
                )
        super().attach_data(task_names, vocabulary, class_counts)

    def _heads_for(self, tasks: list[str]) -> None:
        """The base's heads, then the sized ones: the random draws of the constructor, in its order."""
        sizes = _head_sizes(tasks, self.label_overrides, getattr(self, "_data_counts", None))
        super()._heads_for(tasks)
        self.task_num_labels = sizes
        self._size_heads(sizes)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """With `tasks="data"`, heads rebuilt from a saved model take the saved sizes (renamed tasks included)."""
        if self.tasks_from_data and self.heads is None:
            start = len(f"{prefix}heads.")
            self._data_counts = {
                k[start : -len(".weight")]: int(v.shape[0])
                for k, v in state_dict.items()
                if k.startswith(f"{prefix}heads.") and k.endswith(".weight")
            }
        super()._load_from_state_dict(state_dict, prefix, *args)

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
