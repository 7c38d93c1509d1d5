"""The model contract every algorithm and callback relies on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchmetrics import MetricCollection

if TYPE_CHECKING:
    from pretrained.vocabulary import Vocabulary


@dataclass
class TaskOutput:
    """What `TaskModel.forward` returns: the loss, plus whatever the task's metrics need."""

    loss: torch.Tensor
    preds: Any = None
    targets: Any = None


class TaskModel(nn.Module):
    """A multi-task model: `forward(task, batch)` gives the task's loss.

    `shared_parameters()` are those used by every task (the encoder); per-task gradients, gradient
    surgery, the alignment callback and the Reptile outer update all act on them. Parameters not in it
    (task heads) keep their plain gradient.
    """

    def check_tasks(self, names: list[str]) -> None:
        """Raise a clear error if the model cannot serve one of these tasks."""

    def attach_data(
        self, task_names: list[str], vocabulary: Vocabulary | None, class_counts: dict[str, int] | None = None
    ) -> None:
        """The data's task names (training, then zero-shot), the vocabulary of their corpora and the class count of
        each task that defines one, given once after construction, so that a model config need not list them
        again; models that were asked to take them (`tasks: data`, `vocabulary: data`, `num_classes: data`) do,
        others ignore them."""

    def forward(self, task: str, batch: Any) -> TaskOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer (GradNorm's W in Chen et al. 2018)."""
        return [p for _, p in self.shared_named_parameters()]

    def pretrained_reference(self) -> dict[str, torch.Tensor]:
        """Freshly reloaded pretrained weights (name -> tensor) for drift, RecAdam and MLM analyses.

        Only parameters that come from a pretrained source appear (task heads do not)."""
        return {}

    def eval_metrics(self, task: str, **options: Any) -> MetricCollection:
        """torchmetrics objects for validation/test of `task`; updated by `update_metrics`. `options`: what the
        task's data says about its scoring (`TaskDataModule.metric_options()`, e.g. the MLQA language), so the
        metric follows the data, never a task name; a model refuses options it cannot honour."""
        refuse_options(self, task, options)
        return MetricCollection({})

    def update_metrics(self, metrics: MetricCollection, output: TaskOutput) -> None:
        if len(metrics):
            metrics.update(output.preds, output.targets)


def refuse_options(model: TaskModel, task: str, options: dict[str, Any]) -> None:
    """A scoring option the model does not know would be silently dropped: refused instead."""
    if options:
        raise ValueError(
            f"task '{task}': its data asks to be scored with {options}, which {type(model).__name__} does not "
            "support; use the model this dataset's configs use"
        )
