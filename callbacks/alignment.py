"""Gradient alignment between tasks: pairwise cosines of per-task gradients on fixed probe batches.

Sequential Reptile's implicit objective rewards inner products between the gradients of different tasks
(paper §3.2, Fig. 5); this callback measures them during training without changing it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks.periodic import PeriodicMeasurement
from callbacks.probe_numerics import training_numerics, widen
from lightning_modules.task_gradients import flatten, split_parameters

ALIGN_HEADER = ["step", "task_a", "task_b", "cos"]


class GradientAlignment(PeriodicMeasurement):
    """Every `every_n_steps` optimizer steps (and at the start of training), the gradient of each training
    task w.r.t. the shared parameters on its fixed probe batch, and their pairwise cosines.

    Logged through the logger at `trainer.global_step`: `align/cos_mean` (mean over pairs i < j),
    `align/cos/<a>__<b>` per pair, and `align/heatmap` (an annotated image; TensorBoard only). Rows
    `step,task_a,task_b,cos` are appended to `<log_dir>/alignment.csv` (on resume, rows after the resumed
    step are dropped).

    Training is unchanged by it: the probe runs the model's forward with `torch.autograd.grad` (no `.grad`
    is written), in eval mode (dropout off), with the RNG forked, at the algorithm's evaluation weights
    (φ for the Reptile family), and every flag and weight is restored afterwards. Under any
    `trainer.precision` the probe batches are converted and run as the training loop runs a batch (64-true:
    floating inputs in float64; bf16-mixed: autocast); the gradients are widened to float32 (float64 under
    64-true) before their cosines.

    Args:
        every_n_steps: interval in optimizer steps. One probe costs T forward/backward passes at the
            probe batch size (no optimizer step, dropout off) plus the heatmap: with 4 tasks, probe batch 16
            and training batch 16 (`benchmarks/throughput.py`) about 3 training steps, so the default 200
            costs ~1.5 % of training there (measured). The cost grows linearly with the number of tasks and
            the probe batch size: scale the interval with them to stay under 5 %.
        probe_batch_size: examples per task's probe batch (fewer if the task has fewer).
        seed: seeds the choice of the probe examples (one generator per task, so adding a task does not
            change the others' probes).
        heatmap: log `align/heatmap` to TensorBoard loggers.
        filename: the CSV's name inside the logger's directory.

    Cosines with a zero gradient are reported as 0. Memory: the [T, D] gradient matrix is held on the
    model's device during a probe.
    """

    def __init__(
        self,
        every_n_steps: int = 200,
        probe_batch_size: int = 16,
        seed: int = 0,
        heatmap: bool = True,
        filename: str = "alignment.csv",
    ) -> None:
        super().__init__(every_n_steps, filename, ALIGN_HEADER)
        if probe_batch_size < 1:
            raise ValueError(f"probe_batch_size must be >= 1, got {probe_batch_size}")
        self.probe_batch_size = probe_batch_size
        self.seed = seed
        self.heatmap = heatmap
        self.probes: dict[str, Any] = {}
        self.last_cosines: torch.Tensor | None = None  # [T, T] of the last probe (rank 0), for scripts/tests

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "task"):
            raise TypeError("GradientAlignment needs a MultiTaskDataModule (it draws probe batches per task)")
        if len(datamodule.task_names) < 2:
            raise ValueError(
                f"GradientAlignment needs at least two training tasks, got {datamodule.task_names}; "
                "remove the callback for single-task runs"
            )
        super().setup(trainer, pl_module, stage)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.probes = self.draw_probes(trainer.datamodule, pl_module.device)
        super().on_train_start(trainer, pl_module)

    # ---------------------------------------------------------------- probing
    def draw_probes(self, datamodule: Any, device: torch.device) -> dict[str, Any]:
        """One fixed batch per training task: a seeded random subset of its train split."""
        probes = {}
        for name in datamodule.task_names:
            task = datamodule.task(name)
            dataset = task.train_dataset
            if dataset is None or len(dataset) == 0:
                raise ValueError(f"GradientAlignment: task '{name}' has no training examples to probe")
            generator = torch.Generator().manual_seed(self.seed + zlib.crc32(name.encode()))
            indices = torch.randperm(len(dataset), generator=generator)[: self.probe_batch_size].tolist()
            probes[name] = move_data_to_device(task.collate([dataset[i] for i in indices]), device)
        return probes

    def task_gradients(self, pl_module: pl.LightningModule) -> torch.Tensor:
        """[T, D] gradients of each probe loss w.r.t. the shared parameters, with training left untouched."""
        shared, _ = split_parameters(pl_module)
        if not shared:
            raise ValueError("GradientAlignment: the model has no trainable shared parameters")
        rows = []
        with _probe_context(pl_module), training_numerics(pl_module) as convert:
            for task, batch in self.probes.items():
                loss = pl_module.model(task, convert(batch)).loss
                grads = torch.autograd.grad(loss, shared, allow_unused=True)
                row = flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, shared)])
                rows.append(widen(row))
        return torch.stack(rows)

    def _measure_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        names = list(self.probes)
        cos = cosine_matrix(self.task_gradients(pl_module))
        self.last_cosines = cos
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        metrics = {f"align/cos/{names[i]}__{names[j]}": float(cos[i, j]) for i, j in pairs}
        metrics["align/cos_mean"] = sum(metrics.values()) / len(pairs)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if self.heatmap and isinstance(logger, TensorBoardLogger):
                image = render_heatmap(names, cos.numpy(), title=f"gradient cosine, step {step}")
                logger.experiment.add_image("align/heatmap", image, global_step=step, dataformats="HWC")
        self.csv.append([[step, names[i], names[j], repr(float(cos[i, j]))] for i, j in pairs])


def cosine_matrix(gradients: torch.Tensor) -> torch.Tensor:
    """[T, T] cosines (float64, on CPU) of the rows of a [T, D] matrix; 0 where a row is zero. The Gram matrix is
    taken in float32 or better (16-bit rows are widened) with autocast off."""
    gradients = widen(gradients)
    with torch.autocast(gradients.device.type, enabled=False):
        gram = (gradients @ gradients.T).double().cpu()
    norms = gram.diagonal().clamp_min(0).sqrt()
    denom = norms[:, None] * norms[None, :]
    return torch.where(denom > 0, gram / denom.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(gram))


def render_heatmap(names: list[str], values: np.ndarray, title: str = "") -> np.ndarray:
    """An annotated heatmap on a fixed [-1, 1] blue-red scale, as an HWC uint8 array.

    Drawn on matplotlib's Agg canvas (no global backend change), without tight_layout or a colour bar: the
    cells carry their values, and rendering stays cheap (it runs inside training)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(names)
    cell = 0.45 if n <= 16 else 0.25
    label = 0.08 * max(len(x) for x in names) + 0.3  # inches for the tick labels
    width, height = label + n * cell + 0.2, label + n * cell + (0.35 if title else 0.15)
    fig = Figure(figsize=(width, height), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((label / width, label / height, n * cell / width, n * cell / height))
    ax.imshow(values, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                color = "white" if abs(values[i, j]) > 0.6 else "black"
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6, color=color)
    if title:
        ax.set_title(title, fontsize=7)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@contextmanager
def _probe_context(pl_module: pl.LightningModule) -> Iterator[None]:
    """Evaluation weights, eval mode, forked RNG, grad enabled; everything restored on exit."""
    device = pl_module.device
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    modes = [(m, m.training) for m in pl_module.modules()]
    with torch.random.fork_rng(devices=devices), pl_module.algorithm.evaluation_weights(pl_module):
        pl_module.eval()
        try:
            with torch.enable_grad():
                yield
        finally:
            for module, training in modes:
                module.training = training
