"""MTL (and STL = MTL on a one-task datamodule): the sum of the losses of m sampled tasks per step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from datamodules.schedule import IIDSchedule
from lightning_modules.algorithms.base import Algorithm

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule


class MTL(Algorithm):
    """Eq. 1 without Ω: each step sums the losses of `tasks_per_step` tasks drawn with p_t ∝ N_t^q.

    Paper §4.2: 8 tasks per step and q = 1/5 (following Wang et al. 2021).
    """

    label = "MTL"

    def __init__(self, tasks_per_step: int = 8, q: float = 0.2) -> None:
        if tasks_per_step < 1:
            raise ValueError(f"tasks_per_step must be >= 1, got {tasks_per_step}")
        if q < 0:
            raise ValueError(f"task sampling exponent q must be >= 0, got {q}")
        self.tasks_per_step = tasks_per_step
        self.q = q

    def schedule(self) -> IIDSchedule:
        return IIDSchedule(tasks_per_step=self.tasks_per_step, q=self.q)

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:
        loss = torch.stack([module.task_loss(task, data) for task, data in batch]).sum()
        module.manual_backward(loss)
        module.optimizer_step()
        module.emit("step", [task for task, _ in batch])
        return loss.detach()
