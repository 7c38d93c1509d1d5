"""Table 10 (paper Appendix E): an ImageNet-pretrained ResNet-18 shared by every task, with a randomly initialised
linear head per task sized by that task's number of classes; cross-entropy, scored by accuracy.

The trunk is the shared part (per-task gradients, gradient surgery, the Reptile outer update act on it); the heads
are task-specific parameters, as the text models' per-task heads ("shared initialization of Reptile with task
specific linear classifiers"). BatchNorm running statistics are buffers of the trunk, updated by whichever task's
batch passes through in training mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.models.base import TaskModel, TaskOutput, refuse_options
from lightning_modules.models.resnet import (
    WEIGHTS_FILE,
    WEIGHTS_URL,
    ResNet18,
    load_torchvision_weights,
    read_weights,
    torchvision_imagenet_weights,
)


class ImageClassifier(TaskModel):
    """ResNet-18 trunk -> 512-d pooled features -> the task's own linear head.

    Args:
        num_classes: "data" (the default): one head per task of the data module, sized by the class count its task
            defines (`ImageTask.num_classes`, given by `attach_data`); or task name -> its number of classes. The
            data must have as many classes as the head has outputs.
        pretrained_path: torchvision's ImageNet resnet18 checkpoint (resnet18-f37072fd.pth); its fc is not used.
            None: torchvision's own download when torchvision imports, else refused, unless `random_init`.
        random_init: True to start from torchvision's random initialisation instead (tests only); then
            `pretrained_path` must be None.

    Batches are dicts with `images` [B, 3, H, W] and `labels` [B].
    """

    def __init__(
        self,
        num_classes: dict[str, int] | Literal["data"] = "data",
        pretrained_path: str | None = None,
        random_init: bool = False,
    ) -> None:
        super().__init__()
        if num_classes != "data":
            _check_head_sizes(num_classes)
        if random_init and pretrained_path is not None:
            raise ValueError("random_init: true and a pretrained_path contradict each other; give one of them")
        self.num_classes: dict[str, int] = {} if num_classes == "data" else {t: int(n) for t, n in num_classes.items()}
        self.classes_from_data = num_classes == "data"
        self.pretrained_path = pretrained_path
        self.random_init = random_init
        self.trunk = ResNet18(num_classes=None)
        weights = self._pretrained_weights()
        if weights is not None:
            load_torchvision_weights(self.trunk, weights, pretrained_path or "torchvision's IMAGENET1K_V1 weights")
        # The random-init "pretrained" reference is the initial trunk (drift, RecAdam); kept outside the state_dict.
        self._initial = None if weights is not None else {k: v.detach().clone() for k, v in self._trunk_params()}
        self.heads = nn.ModuleDict({t: nn.Linear(self.trunk.out_features, n) for t, n in self.num_classes.items()})

    def attach_data(
        self, task_names: list[str], vocabulary: Any = None, class_counts: dict[str, int] | None = None
    ) -> None:
        """With `num_classes: data`, one head per task, sized by the class count its data module defines."""
        if not self.classes_from_data:
            return
        counts = class_counts or {}
        missing = [t for t in task_names if t not in counts]
        if missing:
            raise ValueError(
                f"ImageClassifier(num_classes='data'): task(s) {missing} define no class count (image tasks do); "
                "give model.init_args.num_classes as task -> count instead"
            )
        sizes = {t: int(counts[t]) for t in task_names}
        _check_head_sizes(sizes)
        self.num_classes = sizes
        self.heads = nn.ModuleDict({t: nn.Linear(self.trunk.out_features, n) for t, n in sizes.items()})

    def _pretrained_weights(self) -> dict[str, torch.Tensor] | None:
        if self.random_init:
            return None
        if self.pretrained_path is not None:
            return read_weights(Path(self.pretrained_path))
        weights = torchvision_imagenet_weights()
        if weights is None:
            raise ValueError(
                f"ImageClassifier needs the ImageNet weights: download {WEIGHTS_URL} and set "
                f"model.init_args.pretrained_path to that {WEIGHTS_FILE} (torchvision, which could fetch it, is not "
                "importable); random_init: true starts from random weights instead (tests only)"
            )
        return weights

    def _trunk_params(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"trunk.{n}", p) for n, p in self.trunk.named_parameters()]

    # ------------------------------------------------------------- contract
    def check_tasks(self, names: list[str]) -> None:
        if self.classes_from_data and not self.heads:
            raise ValueError(
                "ImageClassifier(num_classes='data') was given no class counts: MultiTaskModule hands over the data "
                "module's (the CLI links data to model.data); or give model.init_args.num_classes"
            )
        unknown = [n for n in names if n not in self.heads]
        if unknown:
            raise ValueError(
                f"ImageClassifier has heads for {sorted(self.heads)}, but task(s) {unknown} have none; "
                "add them to model.init_args.num_classes"
            )

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        missing = [k for k in ("images", "labels") if k not in batch]
        if missing:
            raise KeyError(f"task '{task}': batch lacks {missing} (has {sorted(batch)})")
        if task not in self.heads:
            raise ValueError(f"no head for task '{task}'; heads exist for {sorted(self.heads)}")
        logits = self.heads[task](self.trunk(batch["images"]))
        labels = batch["labels"]
        return TaskOutput(loss=F.cross_entropy(logits, labels), preds=logits.argmax(dim=-1), targets=labels)

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The ResNet-18 trunk (the heads are task-specific)."""
        return [(n, p) for n, p in self._trunk_params() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last residual block (layer4.1)."""
        return [p for p in self.trunk.layer4[-1].parameters() if p.requires_grad]

    def pretrained_reference(self) -> dict[str, torch.Tensor]:
        """The trunk's weights freshly reloaded from their source (the initial weights under random_init)."""
        if self._initial is not None:
            return {k: v.clone() for k, v in self._initial.items()}
        fresh = ResNet18(num_classes=None)
        weights = self._pretrained_weights()
        assert weights is not None
        load_torchvision_weights(fresh, weights, self.pretrained_path or "torchvision's weights")
        own = dict(self._trunk_params())
        return {f"trunk.{n}": p.detach().to(own[f"trunk.{n}"].dtype).clone() for n, p in fresh.named_parameters()}

    def eval_metrics(self, task: str, num_classes: int | None = None, **options: Any) -> MetricCollection:
        """Accuracy over the task's classes; refuses data whose number of classes differs from the head's."""
        refuse_options(self, task, options)
        size = self.num_classes[task]
        if num_classes is not None and num_classes != size:
            where = (
                f"the task's num_classes: {num_classes}"
                if self.classes_from_data
                else (f"model.init_args.num_classes.{task}: {num_classes}")
            )
            raise ValueError(
                f"task '{task}': the data has {num_classes} classes but its head has {size} outputs; set {where}"
            )
        return MetricCollection({"accuracy": MulticlassAccuracy(num_classes=size, average="micro")})


def _check_head_sizes(num_classes: dict[str, int]) -> None:
    if not num_classes:
        raise ValueError("ImageClassifier needs num_classes: task name -> number of classes, one head each")
    bad = {t: n for t, n in num_classes.items() if not t or "." in t or int(n) < 2}
    if bad:
        raise ValueError(f"every head needs a task name without '.' and >= 2 classes, got {bad}")
