"""Per-task gradients, computed in one place: the [T, D] matrix over the shared parameters.

Gradient-surgery rules (PCGrad, GradVac, torchjd aggregators), GradNorm and the alignment callback all
start from this matrix. Task-specific parameters (heads) are not in it: they keep their plain gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from lightning_modules.algorithms.protocol import TrainingModule


def split_parameters(module: TrainingModule) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(shared, task-specific) trainable parameters of the module's model."""
    shared = [p for _, p in module.model.shared_named_parameters() if p.requires_grad]
    shared_ids = {id(p) for p in shared}
    specific = [p for p in module.trainable_parameters() if id(p) not in shared_ids]
    return shared, specific


def task_jacobian(
    module: TrainingModule,
    batch: list[tuple[str, Any]],
    shared: list[nn.Parameter],
    specific: list[nn.Parameter],
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows g_t = ∇_shared L_t for each (task, batch) pair, and the losses [T].

    Gradients of the task-specific parameters are summed into their `.grad`: ∇ Σ_t L_t, or ∇ Σ_t w_t L_t
    when `weights` [T] is given (GradNorm weights the loss; the rows and losses stay unweighted). Under DDP
    both are averaged over ranks here (autograd.grad bypasses DDP's reducer).
    """
    if weights is not None and weights.shape != (len(batch),):
        raise ValueError(
            f"weights must have one entry per (task, batch) pair: {len(batch)}, got {tuple(weights.shape)}"
        )
    rows, losses = [], []
    for i, (task, data) in enumerate(batch):
        loss = module.task_loss(task, data)
        grads = torch.autograd.grad(loss, shared + specific, allow_unused=True)
        rows.append(flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, shared)]))
        for p, g in zip(specific, grads[len(shared) :]):
            if g is not None:
                if weights is not None:
                    g = g * weights[i].detach().to(g)
                p.grad = g if p.grad is None else p.grad + g
        losses.append(loss.detach())
    jacobian = module.all_reduce_mean(torch.stack(rows))
    for p in specific:
        if p.grad is not None:
            p.grad = module.all_reduce_mean(p.grad)
    return jacobian, torch.stack(losses)


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def set_shared_gradient(shared: list[nn.Parameter], vector: torch.Tensor) -> None:
    """Writes a flat gradient vector into the shared parameters' `.grad`."""
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = vector[offset : offset + n].view_as(p).clone()
        offset += n
