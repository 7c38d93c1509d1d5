"""Per-task gradients, computed in one place: the [T, D] matrix over the shared parameters (gradient-surgery rules:
PCGrad, GradVac, torchjd aggregators), or only what GradNorm needs of it (the weighted sum and the rows' entries
on its layer W). Task-specific parameters (heads) are not in it: they keep their plain gradient.

Under fp16 loss scaling (16-mixed) the rows are gradients of the scaled loss, unscaled before they are returned;
the heads' `.grad` stays scaled, as `manual_backward` leaves it, and `set_shared_gradient` scales the combined row
back, so that the precision plugin unscales every `.grad` at the step and skips it on an overflow
(`lightning_modules.precision`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from lightning_modules.precision import LossScale, widen

if TYPE_CHECKING:
    from lightning_modules.algorithms.protocol import TrainingModule


def split_parameters(module: TrainingModule) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(shared, task-specific) trainable parameters of the module's model."""
    shared = [p for _, p in module.model.shared_named_parameters() if p.requires_grad]
    shared_ids = {id(p) for p in shared}
    specific = [p for p in module.trainable_parameters() if id(p) not in shared_ids]
    return shared, specific


class TaskGradients(NamedTuple):
    """What `task_jacobian` returns."""

    jacobian: torch.Tensor
    """[T, D]: row t is ∇_shared L_t, unscaled, in at least float32."""
    losses: torch.Tensor
    """[T], detached."""
    scale: LossScale
    """This step's loss scale: `scale.rescale` the combined row before `set_shared_gradient`."""
    finite: bool
    """False when a gradient overflowed under loss scaling: combine nothing (the step will be skipped)."""


def task_jacobian(
    module: TrainingModule,
    batch: list[tuple[str, Any]],
    shared: list[nn.Parameter],
    specific: list[nn.Parameter],
) -> TaskGradients:
    """Rows g_t = ∇_shared L_t for each (task, batch) pair, and the losses [T].

    Gradients of the task-specific parameters are summed into their `.grad`: ∇ Σ_t L_t. Under DDP both are
    averaged over ranks here (autograd.grad bypasses DDP's reducer), in one all-reduce of one flat buffer: the rows
    are written into it as they are computed (no second [T, D] copy) and the heads' gradients after them.
    """
    scale = LossScale(module)
    width = sum(p.numel() for p in shared)
    buffer: torch.Tensor | None = None
    losses = []
    for i, (task, data) in enumerate(batch):
        loss = module.task_loss(task, data)
        grads = torch.autograd.grad(scale.scale(loss), shared + specific, allow_unused=True)
        if buffer is None:
            buffer = _buffer(shared, specific, len(batch) * width)
        _write(buffer[i * width : (i + 1) * width], grads[: len(shared)], shared)
        for p, g in zip(specific, grads[len(shared) :]):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        losses.append(loss.detach())
    if buffer is None:
        raise ValueError("task_jacobian needs at least one (task, batch) pair")
    _reduce_with_heads(module, buffer, len(batch) * width, specific)
    jacobian = widen(scale.unscale(buffer[: len(batch) * width].view(len(batch), width)))
    finite = scale.finite([jacobian, *(p.grad for p in specific)])
    return TaskGradients(jacobian, torch.stack(losses), scale, finite)


class WeightedGradient(NamedTuple):
    """What `weighted_gradient` returns."""

    combined: torch.Tensor
    """[D]: Σ_t w_t ∇_shared L_t, unscaled, in at least float32."""
    columns: torch.Tensor
    """[T, k]: each task's gradient on the chosen entries of the shared vector only (GradNorm's W), unscaled."""
    losses: torch.Tensor
    """[T], detached."""
    scale: LossScale
    """This step's loss scale: `scale.rescale` the combined row before `set_shared_gradient`."""
    finite: bool
    """False when a gradient overflowed under loss scaling (the step will be skipped)."""


def weighted_gradient(
    module: TrainingModule,
    batch: list[tuple[str, Any]],
    shared: list[nn.Parameter],
    specific: list[nn.Parameter],
    weights: torch.Tensor,
    columns: torch.Tensor | slice,
) -> WeightedGradient:
    """What GradNorm needs, without the [T, D] matrix: the weighted sum Σ_t w_t g_t and each g_t on `columns` only.

    Each task's row is computed, added into the sum and cut to its columns, one row in memory at a time; heads get
    ∇ Σ_t w_t L_t in their `.grad`, as `task_jacobian` gives them. Under DDP the sum, the [T, k] columns and the
    heads' gradients are averaged over ranks in one all-reduce of D + T·k + heads numbers instead of T·D: both are
    linear in the gradients, so this is the average of the rows, combined.
    """
    if weights.shape != (len(batch),):
        raise ValueError(
            f"weights must have one entry per (task, batch) pair: {len(batch)}, got {tuple(weights.shape)}"
        )
    scale = LossScale(module)
    width = sum(p.numel() for p in shared)
    k = len(range(width)[columns]) if isinstance(columns, slice) else int(columns.numel())
    buffer: torch.Tensor | None = None
    row = torch.empty(0)
    losses = []
    for i, (task, data) in enumerate(batch):
        loss = module.task_loss(task, data)
        grads = torch.autograd.grad(scale.scale(loss), shared + specific, allow_unused=True)
        if buffer is None:
            buffer = _buffer(shared, specific, width + len(batch) * k)
            buffer[:width].zero_()
            row = torch.empty(width, dtype=buffer.dtype, device=buffer.device)
        _write(row, grads[: len(shared)], shared)
        buffer[:width].add_(row * weights[i].detach().to(row))
        buffer[width + i * k : width + (i + 1) * k].copy_(row[columns])
        for p, g in zip(specific, grads[len(shared) :]):
            if g is not None:
                g = g * weights[i].detach().to(g)
                p.grad = g if p.grad is None else p.grad + g
        losses.append(loss.detach())
    if buffer is None:
        raise ValueError("weighted_gradient needs at least one (task, batch) pair")
    _reduce_with_heads(module, buffer, width + len(batch) * k, specific)
    combined = widen(scale.unscale(buffer[:width]))
    picked = widen(scale.unscale(buffer[width : width + len(batch) * k].view(len(batch), k)))
    finite = scale.finite([combined, picked, *(p.grad for p in specific)])
    return WeightedGradient(combined, picked, torch.stack(losses), scale, finite)


def _reduce_with_heads(module: TrainingModule, buffer: torch.Tensor, used: int, specific: list[nn.Parameter]) -> None:
    """Under DDP: the heads' gradients are written after the first `used` entries of the buffer, the buffer is
    averaged over ranks in one all-reduce, and the heads' gradients are read back."""
    if _world_size(module) <= 1:
        return
    heads = [p for p in specific if p.grad is not None]
    _write(buffer[used : used + sum(p.numel() for p in heads)], [p.grad for p in heads], heads)
    module.all_reduce_mean(buffer)
    offset = used
    for p in heads:
        p.grad = buffer[offset : offset + p.numel()].view_as(p).to(p.grad.dtype, copy=True)
        offset += p.numel()


def _world_size(module: TrainingModule) -> int:
    trainer = getattr(module, "_trainer", None)
    return int(getattr(trainer, "world_size", 1)) if trainer is not None else 1


def _buffer(shared: list[nn.Parameter], specific: list[nn.Parameter], rows: int) -> torch.Tensor:
    """Room for the rows and, after them, every head's gradient (the part sent with the rows under DDP)."""
    params = shared + specific
    dtype = params[0].dtype
    for p in params[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return torch.empty(rows + sum(p.numel() for p in specific), dtype=dtype, device=params[0].device)


def _write(out: torch.Tensor, grads: Any, params: list[nn.Parameter]) -> None:
    """Copies gradients (None: zero, an unused parameter) one after another into the flat slice `out`."""
    offset = 0
    for g, p in zip(grads, params):
        piece = out[offset : offset + p.numel()]
        if g is None:
            piece.zero_()
        else:
            piece.copy_(g.reshape(-1))
        offset += p.numel()


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def set_shared_gradient(shared: list[nn.Parameter], vector: torch.Tensor) -> None:
    """Writes a flat gradient vector into the shared parameters' `.grad`, in each parameter's dtype."""
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = vector[offset : offset + n].view_as(p).to(p.dtype, copy=True)
        offset += n
