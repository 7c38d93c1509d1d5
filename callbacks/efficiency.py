"""Training cost along a run (paper Fig. 7c / 8a): wall-clock seconds and cumulative gradient steps, so that
methods can be compared at equal compute, not only at equal data."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from callbacks.periodic import StepCsv

EFFICIENCY_HEADER = ["step", "wall_s", "inner_steps", "task_batches"]


class Efficiency(Callback):
    """After every optimizer step, logged at `trainer.global_step` and appended to `<log_dir>/efficiency.csv`:

    - `efficiency/wall_s`: cumulative seconds spent in training steps (forward, backward, optimizer step, the
      Reptile family's outer update). Validation, checkpoints, the other callbacks' per-step work (the analysis
      probes) and fetching the next batch are left out, so the number is the cost of the method, not of what
      observes it. The callback moves itself to the front of the callback list for this: its
      `on_train_batch_start` / `on_train_batch_end` are then the first to run around the training step.
    - `efficiency/inner_steps`: cumulative optimizer steps (every inner step of the Reptile family).
    - `efficiency/task_batches`: cumulative task batches forward and backward, the paper's "gradient
      computations" of Fig. 7c (an MTL-family step over m tasks counts m; a method's extra passes, such as
      GradNorm's or SWEP's, are not counted).

    The totals are saved in checkpoints, so a resumed run continues them. On GPU the device is synchronised at
    both ends of a step so that the clock sees the step's kernels.
    """

    def __init__(self, filename: str = "efficiency.csv") -> None:
        self.csv = StepCsv(filename, EFFICIENCY_HEADER)
        self.wall_s = 0.0
        self.task_batches = 0
        self._started: float | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.csv.setup(trainer)
        # Lightning iterates the list by index: moving this entry from i to 0 shifts only those before it.
        trainer.callbacks.remove(self)
        trainer.callbacks.insert(0, self)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.csv.resume(trainer.global_step)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        _synchronize(pl_module.device)
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._started is None:
            return
        _synchronize(pl_module.device)
        self.wall_s += time.perf_counter() - self._started
        self._started = None
        self.task_batches += len(batch) if isinstance(batch, (list, tuple)) else 1
        step = trainer.global_step
        metrics = {
            "efficiency/wall_s": self.wall_s,
            "efficiency/inner_steps": float(step),
            "efficiency/task_batches": float(self.task_batches),
        }
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
            self.csv.append([[step, repr(self.wall_s), step, self.task_batches]])

    def state_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s, "task_batches": self.task_batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wall_s = float(state_dict["wall_s"])
        self.task_batches = int(state_dict["task_batches"])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
