"""Reptile (Nichol et al. 2018) as a multi-task baseline: one K-step trajectory per task from φ."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from datamodules.schedule import BlockSchedule
from lightning_modules.algorithms.reptile_base import ReptileFamily

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule


class Reptile(ReptileFamily):
    """Eq. 2-3: for every task t (in a seeded random order), θ_t^(0) = φ and K steps on task t only;
    then φ ← φ - η · mean_t(φ - θ_t^(K)). An outer update therefore takes T·K optimizer steps.

    Args:
        inner_steps: K per task trajectory (paper: 1000, as Sequential Reptile).
        outer_lr: η in (0, 1] (paper: 0.1).
        reset_inner_optimizer: clear the inner optimizer's state at the start of every task trajectory
            (default False, as the reference supervised-reptile code, which restores only model variables).
        outer_lr_final: linear annealing of η to this value over the run (needs trainer.max_steps).
    """

    label = "Reptile"

    def __init__(
        self,
        inner_steps: int = 1000,
        outer_lr: float = 0.1,
        reset_inner_optimizer: bool = False,
        outer_lr_final: float | None = None,
    ) -> None:
        super().__init__(inner_steps, outer_lr, reset_inner_optimizer, outer_lr_final)
        self.num_tasks = 0

    def schedule(self) -> BlockSchedule:
        return BlockSchedule(steps_per_task=self.inner_steps)

    def setup(self, module: TrainingModule) -> None:
        self.num_tasks = len(module.task_names)
        super().setup(module)

    def steps_per_outer_update(self) -> int:
        return self.inner_steps * max(1, self.num_tasks)

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:
        ((task, data),) = batch
        if self.k == 0:
            self.start_trajectory(module)  # θ_t^(0) ← φ
        loss = module.task_loss(task, data)
        module.manual_backward(loss)
        module.optimizer_step()
        self.k += 1
        module.emit("inner", [task])
        if self.k == self.inner_steps:
            self.end_trajectory(module)
            if self.trajectories == self.num_tasks:
                assert self.endpoint_sum is not None
                mean_endpoint = [acc / self.num_tasks for acc in self.endpoint_sum]
                self.outer_update(module, endpoint=mean_endpoint)
                module.emit("outer", [])
        return loss.detach()
