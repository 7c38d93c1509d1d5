"""The base of the image classification tasks (paper Appendix E, Table 10): one dataset (or part of one) per task.

A subclass reads its files as distributed (`read(split)` for "train", "test" and, where the dataset has one, "val").
Validation is the dataset's own validation split when it has one, otherwise a seeded hold-out `val_fraction` of
the training images (then never trained on). Batches are {"images": [B, 3, s, s], "labels": [B]}.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from datamodules.task import TaskDataModule
from datamodules.vision.images import ImageDataset, LabelledImages, holdout
from datamodules.vision.transforms import ImageTransform


class ImageTask(TaskDataModule):
    """One image classification task.

    Args:
        name: the task name (one head per task).
        root: the dataset's directory (its layout is in the subclass's docstring).
        image_size: images are resized to image_size x image_size (defaults per dataset: Shin et al. 2021).
        batch_size / eval_batch_size: as `TaskDataModule` (Shin et al. 2021: 128).
        val_fraction: the held-out part of the training images used for validation when the dataset has no
            validation split of its own.
        split_seed: seeds that hold-out (fixed, so that every method validates on the same images).
        augment: padded random crop and horizontal flip on training images (Shin et al. 2021).
        mean / std: per-channel normalisation (Shin et al. 2021: 0.5 and 0.5).
        num_classes: the classes the dataset defines (default: the dataset's own count), which sizes the task's
            head (`ImageClassifier(num_classes="data")`); the model refuses data with another count.
    """

    has_val_split = False
    default_image_size = 32
    default_num_classes = 0  # each dataset's own count

    def __init__(
        self,
        name: str,
        root: str,
        image_size: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        augment: bool = True,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        num_classes: int | None = None,
    ) -> None:
        super().__init__(name=name, batch_size=batch_size, eval_batch_size=eval_batch_size)
        self.declared_classes = num_classes or self.default_num_classes
        if self.declared_classes < 2:
            raise ValueError(f"task '{name}': num_classes must be >= 2, got {self.declared_classes}")
        self.root = Path(root)
        self.image_size = image_size or self.default_image_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.eval_transform = ImageTransform(self.image_size, tuple(mean), tuple(std), train=False)
        self.train_transform = ImageTransform(self.image_size, tuple(mean), tuple(std), train=augment)
        if not self.has_val_split and not 0.0 < val_fraction < 1.0:
            raise ValueError(f"task '{name}': val_fraction must be in (0, 1), got {val_fraction}")
        self.class_names: list[str] = []

    def read(self, split: str) -> LabelledImages:  # pragma: no cover - interface
        """The split ("train", "test", or "val" when `has_val_split`) as read from `root`."""
        raise NotImplementedError

    def class_count(self) -> int:
        return self.declared_classes

    @property
    def num_classes(self) -> int:
        if not self.class_names:
            raise RuntimeError(f"task '{self.name}': the number of classes is known after setup()")
        return len(self.class_names)

    def setup(self, stage: str) -> None:
        if self.train_dataset is not None:
            return
        train = self.read("train")
        if self.has_val_split:
            val = self.read("val")
            train_idx, val_source, val_idx = list(range(len(train))), val, list(range(len(val)))
        else:
            train_idx, val_idx = holdout(len(train), self.val_fraction, self.split_seed)
            val_source = train
        test = self.read("test")
        if not (train.class_names == val_source.class_names == test.class_names):
            raise ValueError(f"task '{self.name}': the splits under {self.root} name different classes")
        self.class_names = train.class_names
        self.train_dataset = ImageDataset(train, train_idx, self.train_transform)
        self.val_dataset = ImageDataset(val_source, val_idx, self.eval_transform)
        self.test_dataset = ImageDataset(test, list(range(len(test))), self.eval_transform)

    def collate(self, examples: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
        images, labels = zip(*examples, strict=True)
        return {"images": torch.stack(images), "labels": torch.tensor(labels, dtype=torch.long)}

    def metric_options(self) -> dict[str, Any]:
        """The number of classes the data has, so the model can refuse a head of another size."""
        return {"num_classes": self.num_classes}
