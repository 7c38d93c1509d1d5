"""Reptile (Nichol et al. 2018) as a multi-task baseline: one K-step trajectory per task from φ."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from datamodules.schedule import BlockSchedule
from lightning_modules.algorithms.reptile_base import ReptileFamily

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule


class Reptile(ReptileFamily):
    """Eq. 2-3: for every task t (in a seeded random order), θ_t^(0) = φ and K steps on task t only;
    then φ ← φ - η · mean_t(φ - θ_t^(K)). An outer update therefore takes T·K optimizer steps.

    What separates Reptile from Sequential Reptile is that each trajectory sees one task only. The inner
    optimizer's state carries over between trajectories (as in the reference supervised-reptile code, which
    restores only the model variables), so a first moment would carry the previous task's gradients into the
    next task's trajectory: with Adam's β1 = 0.9, 0.9^k of the first moment at inner step k of a trajectory is
    the previous trajectory's (59 % on average over the K = 10 steps of the offline default). supervised-reptile's inner
    Adam has β1 = 0, so only the second moment (a per-coordinate step scale) and the step count carry over;
    `inner_beta1` gives the same.

    Args:
        inner_steps: K per task trajectory (paper: 1000, as Sequential Reptile).
        outer_lr: η in (0, 1] (paper: 0.1).
        reset_inner_optimizer: clear the inner optimizer's state at the start of every task trajectory
            (default False, as the reference supervised-reptile code, which restores only model variables).
        outer_lr_final: linear annealing of η to this value over the run (needs trainer.max_steps).
        inner_beta1: the inner optimizer's first-moment decay (`betas[0]` of Adam/AdamW), set at the start of
            every task trajectory over what the `optimizer:` section gives. Default 0, supervised-reptile's
            (no first moment crosses a trajectory boundary); None keeps the optimizer's own. An optimizer with
            SGD momentum is refused unless None: its momentum buffer would carry across tasks.
    """

    label = "Reptile"

    def __init__(
        self,
        inner_steps: int = 1000,
        outer_lr: float = 0.1,
        reset_inner_optimizer: bool = False,
        outer_lr_final: float | None = None,
        inner_beta1: float | None = 0.0,
    ) -> None:
        super().__init__(inner_steps, outer_lr, reset_inner_optimizer, outer_lr_final)
        if inner_beta1 is not None and not 0.0 <= inner_beta1 < 1.0:
            raise ValueError(f"inner_beta1 must be in [0, 1) or None, got {inner_beta1}")
        self.inner_beta1 = inner_beta1
        self.num_tasks = 0

    def schedule(self) -> BlockSchedule:
        return BlockSchedule(steps_per_task=self.inner_steps)

    def setup(self, module: TrainingModule) -> None:
        self.num_tasks = len(module.task_names)
        super().setup(module)

    def steps_per_outer_update(self) -> int:
        return self.inner_steps * max(1, self.num_tasks)

    def start_trajectory(self, module: TrainingModule) -> None:
        super().start_trajectory(module)
        if self.inner_beta1 is not None:
            set_first_moment_decay(module.optimizers(), self.inner_beta1)

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


def set_first_moment_decay(optimizer: Any, beta1: float) -> None:
    """Sets `betas[0]` of every parameter group (Adam family). Set on the live groups, not the optimizer's
    config, so a restored checkpoint's groups and a resumed run get it too."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps the torch optimizer
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (beta1, group["betas"][1])
        elif group.get("momentum", 0.0):
            raise ValueError(
                f"Reptile: inner_beta1={beta1} keeps the first moment within a task trajectory, but the inner "
                f"optimizer {type(optimizer).__name__} has momentum {group['momentum']} (no betas); set its "
                "momentum to 0, or inner_beta1: null to keep its momentum across trajectories"
            )
