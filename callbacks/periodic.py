"""The shared schedule of the analysis callbacks (alignment, masked-LM loss, drift): measure on rank 0 at the start
of training, every `every_n_steps` optimizer steps and at the run's last step (so the finetuned model is always
measured, whatever the interval), log at `trainer.global_step`, append rows to a CSV in the run directory, and
resume without duplicating or losing a measurement."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from pretrained.files import atomic_write_text


class PeriodicMeasurement(Callback):
    """Subclasses implement `_measure_and_log(trainer, pl_module)`. On resume, the CSV keeps its rows up to the
    resumed step, and a step measured before the checkpoint was written is not measured again."""

    def __init__(self, every_n_steps: int, filename: str, header: list[str]) -> None:
        if every_n_steps < 1:
            raise ValueError(f"{type(self).__name__}: every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.csv = StepCsv(filename, header)
        self._last_step = -1
        self._final_step: int | None = None  # the run's planned last optimizer step (max_steps / max_epochs)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.csv.setup(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        planned = trainer.estimated_stepping_batches  # min(max_steps, epochs x batches); inf for endless runs
        self._final_step = int(planned) if planned != float("inf") else None
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        if self.csv.resume(step) and step > 0:
            self._last_step = step  # measured before the checkpoint was written
            return
        if step == 0 or self._due(step):  # a resume measures only what an uninterrupted run would have
            self._measure_and_log(trainer, pl_module)

    def _due(self, step: int) -> bool:
        return step % self.every_n_steps == 0 or step == self._final_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and self._due(step) and step != self._last_step:
            self._measure_and_log(trainer, pl_module)

    def _measure_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise NotImplementedError


class StepCsv:
    """A CSV in the logger's directory, written by rank 0, whose rows start with the global step."""

    def __init__(self, filename: str, header: list[str]) -> None:
        self.filename = filename
        self.header = header
        self.path: Path | None = None

    def setup(self, trainer: pl.Trainer) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: called on every rank
        self.path = Path(log_dir or trainer.default_root_dir) / self.filename if trainer.is_global_zero else None

    def resume(self, step: int) -> bool:
        """Keep rows up to `step` (drop those a killed run wrote after its checkpoint, and a last row it cut
        short); True if the file had a row at `step`. Starts a fresh file at step 0. The file is replaced
        atomically, so a kill during the rewrite leaves the old history."""
        if self.path is None:
            return False
        rows: list[list[str]] = []
        if step > 0 and self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.reader(f)
                next(reader, None)
                rows = [r for r in reader if len(r) == len(self.header) and r[0].isdigit() and int(r[0]) <= step]
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(self.header)
        writer.writerows(rows)
        atomic_write_text(self.path, text.getvalue())
        return any(int(r[0]) == step for r in rows)

    def append(self, rows: list[list[Any]]) -> None:
        if self.path is None:
            return
        if not self.path.exists():
            self.resume(0)
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        with open(self.path, "a", newline="") as f:
            f.write(text.getvalue())  # one write: a kill cuts at most this call's rows, which resume() drops
