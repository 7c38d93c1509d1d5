"""The synthetic 2-D benchmark of paper §4.1: tasks with no data, only a name."""

from __future__ import annotations

import torch

from datamodules.task import TaskDataModule


class SyntheticTaskDataModule(TaskDataModule):
    """A task of the 2-D landscape. Its loss is a deterministic function of φ, so the batches only
    carry example indices; `size` sets N_t for the task sampling p_t ∝ N_t^q."""

    def __init__(self, name: str, size: int = 100, batch_size: int = 1) -> None:
        super().__init__(name=name, batch_size=batch_size)
        if size < 1:
            raise ValueError(f"task '{name}': size must be >= 1, got {size}")
        self.size = size

    def setup(self, stage: str) -> None:
        self.train_dataset = torch.arange(self.size)
        self.val_dataset = torch.arange(1)
        self.test_dataset = torch.arange(1)

    def collate(self, examples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"index": torch.stack(examples)}
