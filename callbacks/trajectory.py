"""trajectory.csv / trajectory.png for the 2-D synthetic landscape (paper Fig. 3)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from callbacks.landscape_plot import save_trajectory_png
from pretrained.files import atomic_write_text

HEADER = ["step", "phase", "task", "x", "y"]
REPTILE_FAMILY = ("Reptile", "SequentialReptile")


class TrajectoryRecorder(Callback):
    """One row per inner step (`inner`), per outer update (`outer`, holding the new φ) and per step of
    the other methods (`step`); the first row holds the initial point (`outer` for the Reptile family,
    whose φ_0 it is, `step` otherwise). Needs a model with `point() -> (x, y)`.

    On resume, rows written after the checkpoint's step are dropped, so the file matches the run.
    """

    def __init__(self, filename: str = "trajectory.csv", plot: bool = True) -> None:
        self.filename = filename
        self.plot = plot
        self.path: Path | None = None
        self._module: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(pl_module.model, "point"):
            raise TypeError("TrajectoryRecorder needs a 2-D model with point() (the synthetic landscape)")
        self._module = pl_module
        pl_module.add_step_listener(self._on_step)
        log_dir = trainer.log_dir  # a collective (broadcast from rank 0): every rank must call it
        if trainer.is_global_zero:
            self.path = Path(log_dir or trainer.default_root_dir) / self.filename

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.path is None:
            return
        step = trainer.global_step
        if step > 0 and self.path.exists():
            rows = [r for r in _read(self.path) if int(r["step"]) <= step]
            _write(self.path, rows)
            return
        first_phase = "outer" if type(pl_module.algorithm).__name__ in REPTILE_FAMILY else "step"
        x, y = pl_module.model.point()
        _write(self.path, [{"step": 0, "phase": first_phase, "task": "", "x": x, "y": y}])

    def _on_step(self, module: Any, phase: str, tasks: list[str]) -> None:
        if self.path is None:
            return
        if phase == "outer":
            task = ""
        elif phase == "step" and sorted(tasks) == sorted(module.task_names):
            task = "all"
        else:
            task = "+".join(tasks)
        x, y = module.model.point()
        line = io.StringIO()
        csv.writer(line).writerow([module.global_step, phase, task, repr(x), repr(y)])
        with open(self.path, "a", newline="") as f:
            f.write(line.getvalue())  # one write: a kill cuts at most this row, which a resume drops

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.path is None or not self.plot:
            return
        optima = {name: x.tolist() for name, x in pl_module.model.optima.items()}
        title = type(pl_module.algorithm).__name__
        save_trajectory_png(self.path, self.path.with_suffix(".png"), optima, title)


def _read(path: Path) -> list[dict[str, str]]:
    """The complete rows (a row a killed run cut short is dropped)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if None not in r.values() and None not in r and r["step"].isdigit() and r["y"]]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replaced atomically: a kill during a resume's rewrite leaves the old history."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HEADER)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())
