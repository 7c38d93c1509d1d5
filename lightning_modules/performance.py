"""Settings that change how fast a run goes, not which batches it trains on: the CLI's `performance:` section.

They are not among the settings a resume is checked against (`lifecycle/run_config.py`): a run may continue with
more loader workers or with compilation switched on. `matmul_precision` does change the arithmetic (TF32 keeps 10
mantissa bits in float32 matrix products on Ampere and newer GPUs), so it is recorded in the checkpoint and a
resume with another value is warned about: it continues, but not bitwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

MatmulPrecision = Literal["highest", "high", "medium"]


@dataclass
class Performance:
    """Args:
    matmul_precision: `torch.set_float32_matmul_precision`: `highest` (float32 products, PyTorch's default),
        `high` (TF32 on GPUs that have it: about 2-3x faster float32 matrix products) or `medium` (bfloat16
        products). No effect under `bf16-mixed`/`16-mixed` autocast regions, whose products are 16-bit anyway.
    compile: `torch.compile` the model's encoder (the transformer: its forward, with dynamic sequence lengths, so
        batches padded to different lengths reuse one graph). Heads, losses, the update rules, the optimizer and
        evaluation metrics stay eager. Off by default: the first steps pay the compilation.
    loader_workers: DataLoader worker processes that read and collate training batches ahead of the step (0: in
        the training process). The task schedule is drawn in the training process either way.
    pin_memory: collate training batches into page-locked memory, so the copy to the GPU overlaps compute;
        default (null): on when training on a CUDA device.
    """

    matmul_precision: MatmulPrecision = "highest"
    compile: bool = False
    loader_workers: int = 0
    pin_memory: bool | None = None

    def __post_init__(self) -> None:
        if self.loader_workers < 0:
            raise ValueError(f"performance.loader_workers must be >= 0, got {self.loader_workers}")

    def apply(self, module: Any, datamodule: Any) -> None:
        """Sets the matmul precision, hands the loader settings to the data module, compiles the encoder."""
        torch.set_float32_matmul_precision(self.matmul_precision)
        datamodule.loader_workers = self.loader_workers
        datamodule.pin_memory = self.pin_memory
        if self.compile:
            compile_encoder(module.model)


def compile_encoder(model: Any) -> None:
    """`torch.compile` in place (parameter names and checkpoints unchanged) the model's `encoder`."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, torch.nn.Module):
        raise ValueError(
            f"performance.compile: {type(model).__name__} has no `encoder` module to compile (only the encoder "
            "models do); drop --performance.compile"
        )
    encoder.compile(dynamic=True)


def from_config(section: Any) -> Performance:
    """The `performance:` section (a jsonargparse Namespace, a dict or None) as a `Performance`."""
    if section is None:
        return Performance()
    if isinstance(section, Performance):
        return section
    values = section if isinstance(section, dict) else vars(section)
    return Performance(**{k: v for k, v in values.items() if not k.startswith("__")})
