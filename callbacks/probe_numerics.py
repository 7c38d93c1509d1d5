"""How the analysis callbacks run the model under any `Trainer(precision=...)`.

A callback's probe runs outside the training loop, so nothing casts its inputs or sets the dtype context for it:
under 64-true a float32 input meets float64 weights ("mat1 and mat2 must have the same dtype"), and tensors a model
creates in its forward take the wrong default dtype. The probe is run the way the loop runs a training step
(`training_numerics`), and what it measures (cosines, losses, norms) is computed in float32 or better.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import Precision
from torch import nn


def precision_plugin(pl_module: pl.LightningModule) -> Precision:
    """The trainer's precision plugin; the plain float32 one for a module without a trainer."""
    trainer = getattr(pl_module, "_trainer", None)
    plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
    return plugin if plugin is not None else Precision()


@contextmanager
def training_numerics(pl_module: pl.LightningModule) -> Iterator[Callable[[Any], Any]]:
    """The plugin's forward context, as around `training_step` (a true precision's default dtype, a mixed one's
    autocast); yields its input conversion, as the loop applies it to a batch (floating tensors to the weights'
    dtype, integer ids untouched)."""
    plugin = precision_plugin(pl_module)
    with plugin.forward_context():
        yield plugin.convert_input


def statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype measurements are made in: float64 for float64 weights, float32 otherwise (never 16 bits)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def widen(tensor: torch.Tensor) -> torch.Tensor:
    """A floating tensor in `statistics_dtype` (no copy when it already is)."""
    return tensor.to(statistics_dtype(tensor.dtype)) if tensor.is_floating_point() else tensor


def parameter_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating parameter (float32 when it has none)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


class FixedPrecisionHead(nn.Module):
    """A measuring head that keeps its own dtype: hidden states of any dtype are cast to it, autocast is off.

    The encoder under study runs as training runs it; the fixed head that turns its states into a loss is the
    instrument, and stays float32 (float64 under 64-true) so the numbers compare across precisions."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return self.head(hidden.to(parameter_dtype(self.head)))
