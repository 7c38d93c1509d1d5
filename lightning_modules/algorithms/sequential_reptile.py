"""Sequential Reptile (Lee et al., ICLR 2022, Algorithm 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from datamodules.schedule import IIDSchedule
from lightning_modules.algorithms.reptile_base import ReptileFamily

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule


class SequentialReptile(ReptileFamily):
    """One inner trajectory of K steps, each on a task t_k ~ Cat(p), p_t ∝ N_t^q; then φ ← φ - η(φ - θ_K).

    Args:
        inner_steps: K (paper: 1000).
        outer_lr: η in (0, 1] (paper: 0.1).
        q: task sampling exponent (paper: the baselines' 1/5).
        reset_inner_optimizer: clear the inner optimizer's state (Adam moments) at each outer update.
            Default False: the reference Reptile code (openai/supervised-reptile) saves and restores only the
            model variables around each inner loop, so Adam's moments carry over from one outer step to
            the next; set True for a fresh optimizer per trajectory.
        outer_lr_final: if set, η is annealed linearly to this value over the run's outer updates
            (supervised-reptile's --meta-step-final); needs trainer.max_steps.

    The inner optimizer is the `optimizer:` section as given: the paper's AdamW, with its default β1 = 0.9.
    Unlike Reptile's (β1 = 0, `Reptile.inner_beta1`), this first moment is kept: one trajectory already mixes
    tasks drawn from p by design, so momentum carried within it or into the next trajectory mixes nothing the
    method does not; setting β1 = 0 would be a change to the paper's inner optimizer.
    """

    label = "Seq. Reptile"

    def __init__(
        self,
        inner_steps: int = 1000,
        outer_lr: float = 0.1,
        q: float = 0.2,
        reset_inner_optimizer: bool = False,
        outer_lr_final: float | None = None,
    ) -> None:
        super().__init__(inner_steps, outer_lr, reset_inner_optimizer, outer_lr_final)
        if q < 0:
            raise ValueError(f"task sampling exponent q must be >= 0, got {q}")
        self.q = q

    def schedule(self) -> IIDSchedule:
        return IIDSchedule(tasks_per_step=1, q=self.q)

    def steps_per_outer_update(self) -> int:
        return self.inner_steps

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:
        ((task, data),) = batch
        if self.k == 0:
            self.start_trajectory(module)  # θ^(0) ← φ
        loss = module.task_loss(task, data)
        module.manual_backward(loss)
        module.optimizer_step()  # θ^(k) ← θ^(k-1) - α ∇L(θ^(k-1); B_{t_k})
        self.k += 1
        module.emit("inner", [task])
        if self.k == self.inner_steps:
            self.outer_update(module, endpoint=module.trainable_parameters())  # φ ← φ - η(φ - θ^(K))
            module.emit("outer", [])
        return loss.detach()
