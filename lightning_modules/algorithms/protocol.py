"""What an update rule may use of the module that runs it: `MultiTaskModule` in training, small fakes in tests.

Algorithms are annotated with this Protocol rather than with `MultiTaskModule`, so the algorithms package does
not import the LightningModule that imports it, and a test fake is checked against one written-down contract
(`tests/test_protocol.py`) instead of imitating the module by hand.

Two further attributes are read with `getattr` and a default, so a module may lack them: `grad_clip_norm`
(SWEP clips its generator's step like the inner one) and `_trainer` (its precision plugin's GradScaler:
`lightning_modules.precision` scales the `autograd.grad` losses with it, and SWEP refuses it).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from lightning_modules.models.base import TaskModel


@runtime_checkable
class TrainingModule(Protocol):
    """The module as an `Algorithm` sees it: the model, the task names, losses, one optimizer step, logging."""

    model: TaskModel
    """The multi-task model (shared/last-shared parameters, pretrained reference, `model(task, batch)`)."""

    task_names: list[str]
    """The training tasks, in the data module's order."""

    @property
    def trainer(self) -> Any:
        """The Lightning trainer (the Reptile family reads `max_steps` to anneal η)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters with `requires_grad`, in a fixed order (φ, task gradients)."""

    def task_loss(self, task: str, batch: Any) -> torch.Tensor:
        """The loss of one task on one batch (checked finite and logged by the module)."""

    def manual_backward(self, loss: torch.Tensor) -> None:
        """Backward through the precision plugin / DDP as Lightning requires under manual optimization."""

    def optimizer_step(self) -> None:
        """One inner optimizer step from `.grad` (then zero_grad and the lr scheduler)."""

    def optimizers(self) -> Any:
        """The inner optimizer (RecAdam and SWEP read its parameter groups and learning rate)."""

    def reset_optimizer_state(self) -> None:
        """Forget the inner optimizer's moments (Reptile's `reset_inner_optimizer`)."""

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average over DDP ranks (gradients from `autograd.grad` bypass DDP's reducer)."""

    def log(self, name: str, value: Any, **kwargs: Any) -> None:
        """Lightning's `log` (algorithm diagnostics such as `gradnorm/loss`)."""

    def emit(self, phase: str, tasks: list[str]) -> None:
        """Tell step listeners about an inner step (`inner`/`step`) or an outer update (`outer`)."""
