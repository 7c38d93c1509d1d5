"""The update-rule contract: a schedule, one training step, and the state it keeps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from datamodules.schedule import ScheduleSpec

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule


class Algorithm:
    """An update rule. It owns its task schedule; `training_step` makes exactly one inner optimizer step.

    Everything it keeps between steps goes through `state_dict`/`load_state_dict` so resume is exact.
    """

    label: str = ""  # the name tables and figures give it (registry.py); "" shows the class name

    def schedule(self) -> ScheduleSpec:  # pragma: no cover - interface
        raise NotImplementedError

    def setup(self, module: TrainingModule) -> None:
        """Called once the model is on its device, before the first step."""

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @contextmanager
    def evaluation_weights(self, module: TrainingModule) -> Iterator[None]:
        """The weights to evaluate with (the Reptile family evaluates φ, not a mid-trajectory θ)."""
        yield

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
