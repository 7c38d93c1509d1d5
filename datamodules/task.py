"""The per-task data contract: one LightningDataModule instance per task (usually one language)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, default_collate

if TYPE_CHECKING:
    from pretrained.vocabulary import Vocabulary


class TaskDataModule(pl.LightningDataModule):
    """A task: a name, its train/val/test splits and how to collate them.

    Subclasses fill `train_dataset`, `val_dataset` and `test_dataset` in `setup` (any sized, indexable
    sequence) and may override `collate`. Training batches are drawn by `MultiTaskDataModule`, which
    owns the task schedule; evaluation uses the plain loaders below.
    """

    def __init__(self, name: str, batch_size: int = 16, eval_batch_size: int | None = None) -> None:
        super().__init__()
        if not name:
            raise ValueError("a task needs a non-empty name")
        if batch_size < 1:
            raise ValueError(f"task '{name}': batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.train_dataset: Sequence[Any] | None = None
        self.val_dataset: Sequence[Any] | None = None
        self.test_dataset: Sequence[Any] | None = None

    def collate(self, examples: list[Any]) -> Any:
        return default_collate(examples)

    def vocabulary(self) -> Vocabulary | None:
        """The corpus this task reads, as the token ids a model may keep (`vocabulary: data`); None when the
        task cannot say, and then no model is trimmed to the data."""
        return None

    def metric_options(self) -> dict[str, Any]:
        """What this task's data says about how it is scored (keyword arguments of the model's `eval_metrics`,
        e.g. the MLQA language), so that the metric follows the data and never a task name."""
        return {}

    def class_count(self) -> int | None:
        """How many classes this task's dataset defines, known before its files are read, so that a model can size
        the task's head from the data (`num_classes: data`); None when the task cannot say."""
        return None

    def single_language_files(self) -> tuple[str | None, list[str]]:
        """(language, files that hold only that language's rows); `MultiTaskDataModule` refuses two languages
        reading one such file. (None, []) when the task cannot say."""
        return None, []

    def num_train_examples(self) -> int:
        if self.train_dataset is None:
            raise RuntimeError(f"task '{self.name}' has no training split (was setup('fit') called?)")
        return len(self.train_dataset)

    def _eval_loader(self, dataset: Sequence[Any] | None, split: str) -> DataLoader:
        if dataset is None or len(dataset) == 0:
            raise ValueError(f"task '{self.name}' has an empty {split} split")
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collate)  # type: ignore[arg-type]

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_dataset, "validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset, "test")
