"""Numeric precision for the update rules: which of Lightning's precisions can train, fp16 loss scaling on the
`torch.autograd.grad` path, and the full-precision region where task gradients are combined.

What each `trainer.precision` does here:

- `32-true`, `64-true`: the weights, gradients and every combination of them in that dtype.
- `bf16-mixed`, `16-mixed`: float32 weights and gradients, the forward under autocast. Per-task gradients are
  combined (PCGrad's projections, GradVac's cosines, GradNorm's norms and weights, torchjd's Gramian and QP) outside
  autocast in float32: under autocast their matrix products would run in half precision.
- `16-mixed` also scales the loss with the precision plugin's GradScaler. `manual_backward` does that itself; the
  per-task gradients (`task_jacobian`) use `LossScale`: the loss is scaled like `manual_backward` scales it, the rows
  are unscaled before they are combined, and the combined gradient is written back scaled, so that the plugin's
  unscale at the optimizer step finds infinities exactly as for a plain backward: the step is skipped and the scale
  lowered, the GradScaler way. Gradient clipping happens after that unscale (`MultiTaskModule`).
- `bf16-true`, `16-true`: refused for training (`check_training_precision`): see its docstring.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.plugins.precision import HalfPrecision

HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_training_precision(plugin: Any) -> None:
    """Refuses to train with half-precision weights (`bf16-true`, `16-true`).

    Those keep the weights themselves in 16 bits with no float32 master copy: a step smaller than half the spacing
    of a weight's 16-bit neighbours is rounded away (bf16 keeps 8 significant bits, so an AdamW step of about lr =
    3e-5 is lost on every weight of magnitude above ~0.008), and the Reptile family's outer step η(θ − φ) is lost the
    same way. A float32 master copy would cost the memory `bf16-mixed` costs (float32 weights, 16-bit compute),
    which already gives full-precision updates, so training asks for that instead. Validation and testing may use
    them.
    """
    if isinstance(plugin, HalfPrecision):
        name = plugin.precision
        dtype = "bfloat16" if name.startswith("bf16") else "float16"
        raise ValueError(
            f"trainer.precision={name} keeps the weights in {dtype} without a float32 master copy, so small optimizer "
            "steps (AdamW at lr 3e-5) and the Reptile outer step η(θ − φ) are rounded away; train with "
            f"--trainer.precision {name.replace('true', 'mixed')} (float32 weights, {dtype} compute: about the memory "
            f"a float32 master copy would take). {name} is fine for validate and test"
        )


def precision_plugin(module: Any) -> Any:
    """The trainer's precision plugin, or None for a module without a trainer (a test fake)."""
    trainer = getattr(module, "_trainer", None)
    return getattr(trainer, "precision_plugin", None) if trainer is not None else None


def loss_scaler(module: Any) -> torch.amp.GradScaler | None:
    """The enabled GradScaler the precision plugin scales losses with (16-mixed), else None."""
    scaler = getattr(precision_plugin(module), "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def widen(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in at least float32 (float64 stays float64): what task gradients are combined in."""
    return tensor.float() if tensor.dtype in HALF_DTYPES else tensor


@contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off on `device`: dot products, projections and QPs over gradients need the gradients' precision."""
    with torch.autocast(device.type, enabled=False):
        yield


class LossScale:
    """The loss scale of one training step: the GradScaler's current scale, or none (every method an identity).

    Made before the step's first backward (the scale changes only at the optimizer step); `skipped()` after the
    optimizer step tells whether the scaler skipped it (a GradScaler lowers its scale exactly when it finds an
    infinity or a NaN: its backoff factor is below 1). The unscale and the rescale multiply by the reciprocal of the
    scale and by the scale, as the GradScaler does: exact for its default power-of-two scales.
    """

    def __init__(self, module: Any) -> None:
        self.scaler = loss_scaler(module)
        self.value: float | None = None if self.scaler is None else float(self.scaler.get_scale())

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss as `manual_backward` scales it (which also initialises the scaler's scale tensor)."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscale(self, gradient: torch.Tensor) -> torch.Tensor:
        """A gradient of the scaled loss, divided by the scale."""
        return gradient if self.value is None else gradient * (1.0 / self.value)

    def rescale(self, gradient: torch.Tensor) -> torch.Tensor:
        """A gradient multiplied by the scale again, for `.grad`, which the plugin unscales at the step."""
        return gradient if self.value is None else gradient * self.value

    def finite(self, tensors: Iterable[torch.Tensor | None]) -> bool:
        """Whether every tensor is finite; always True without scaling, where a non-finite gradient is no scale
        overflow and the module's parameter check stops the run instead."""
        if self.scaler is None:
            return True
        return all(bool(torch.isfinite(t).all()) for t in tensors if t is not None)

    def skipped(self) -> bool:
        """After the optimizer step: whether the GradScaler skipped it (found an infinity or a NaN)."""
        return self.scaler is not None and self.value is not None and float(self.scaler.get_scale()) < self.value
