"""Gradient alignment between tasks: pairwise cosines of per-task gradients on fixed probe batches.

Sequential Reptile's implicit objective rewards inner products between the gradients of different tasks
(paper §3.2, Fig. 5); this callback measures them during training without changing it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks.alignment_stats import cos_mean_standard_error
from callbacks.periodic import PeriodicMeasurement, StepCsv
from callbacks.probe_numerics import training_numerics, widen
from lightning_modules.task_gradients import flatten, split_parameters

ALIGN_HEADER = ["step", "task_a", "task_b", "cos"]
SUMMARY_HEADER = ["step", "cos_mean", "cos_mean_se", "mtl_loss"]


@dataclass
class Probe:
    """What one probe measured at the evaluation weights: [T, D] task gradients, each task's probe-batch loss,
    and per task the [n_t, T] inner products of its example gradients with the task gradients (empty when the
    standard error is off)."""

    gradients: torch.Tensor
    losses: list[float]
    products: list[torch.Tensor]


class GradientAlignment(PeriodicMeasurement):
    """Every `every_n_steps` optimizer steps (and at the start of training), the gradient of each training
    task w.r.t. the shared parameters on its fixed probe batch, and their pairwise cosines.

    Logged through the logger at `trainer.global_step`: `align/cos_mean` (mean over pairs i < j),
    `align/cos/<a>__<b>` per pair, `align/heatmap` (an annotated image; TensorBoard only), and for the trade-off
    of the paper's Fig. 7a `tradeoff/mtl_loss` (the mean over training tasks of the probe-batch losses, i.e. the
    MTL objective / T, from the forward passes that give the gradients, so at the same weights) and
    `tradeoff/cos_mean_se` (the standard error of `align/cos_mean` over the choice of probe examples,
    `callbacks/alignment_stats.py`). Rows `step,task_a,task_b,cos` are appended to `<log_dir>/alignment.csv`
    and `step,cos_mean,cos_mean_se,mtl_loss` to `alignment_summary.csv` (on resume, rows after the resumed step
    are dropped).

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
        standard_error: also measure `tradeoff/cos_mean_se`. Off by default for its cost: it needs every
            probe example's gradient, one batch-1 backward pass per example (T x probe_batch_size of them), each
            reduced at once to T inner products, so a probe takes 2-3x as long (1 thread of a busy 2-core
            machine: the offline e5-small probe of 7 x 8 verses 9-13 s -> 25 s, the throughput benchmark's
            model with 4 x 16 examples 0.4-0.5 s -> 1.1-1.6 s).
        summary_filename: the name of the CSV of the per-step summary (`cos_mean`, its SE, `mtl_loss`).

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
        standard_error: bool = False,
        summary_filename: str = "alignment_summary.csv",
    ) -> None:
        super().__init__(every_n_steps, filename, ALIGN_HEADER)
        if probe_batch_size < 1:
            raise ValueError(f"probe_batch_size must be >= 1, got {probe_batch_size}")
        self.probe_batch_size = probe_batch_size
        self.seed = seed
        self.heatmap = heatmap
        self.standard_error = standard_error
        self.summary = StepCsv(summary_filename, SUMMARY_HEADER)
        self.probes: dict[str, Any] = {}
        self.examples: dict[str, list[Any]] = {}  # each probe example as a batch of one (the standard error)
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
        self.summary.setup(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.probes = self.draw_probes(trainer.datamodule, pl_module.device)
            self.summary.resume(trainer.global_step)
        super().on_train_start(trainer, pl_module)

    # ---------------------------------------------------------------- probing
    def draw_probes(self, datamodule: Any, device: torch.device) -> dict[str, Any]:
        """One fixed batch per training task: a seeded random subset of its train split (and, for the standard
        error, each of its examples collated alone)."""
        probes = {}
        self.examples = {}
        for name in datamodule.task_names:
            task = datamodule.task(name)
            dataset = task.train_dataset
            if dataset is None or len(dataset) == 0:
                raise ValueError(f"GradientAlignment: task '{name}' has no training examples to probe")
            generator = torch.Generator().manual_seed(self.seed + zlib.crc32(name.encode()))
            indices = torch.randperm(len(dataset), generator=generator)[: self.probe_batch_size].tolist()
            probes[name] = move_data_to_device(task.collate([dataset[i] for i in indices]), device)
            if self.standard_error:
                self.examples[name] = [move_data_to_device(task.collate([dataset[i]]), device) for i in indices]
        return probes

    def probe(self, pl_module: pl.LightningModule) -> Probe:
        """Gradients and losses of each probe batch w.r.t. the shared parameters, with training left untouched."""
        shared, _ = split_parameters(pl_module)
        if not shared:
            raise ValueError("GradientAlignment: the model has no trainable shared parameters")
        rows, losses, products = [], [], []
        with _probe_context(pl_module), training_numerics(pl_module) as convert:
            for task, batch in self.probes.items():
                loss = pl_module.model(task, convert(batch)).loss
                rows.append(_gradient(loss, shared))
                losses.append(float(widen(loss.detach())))
            gradients = torch.stack(rows)
            for task, examples in self.examples.items():  # one example gradient in memory at a time
                products.append(
                    torch.stack(
                        [_products(gradients, pl_module.model(task, convert(x)).loss, shared) for x in examples]
                    )
                )
        return Probe(gradients, losses, products)

    def _measure_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        names = list(self.probes)
        probe = self.probe(pl_module)
        cos = cosine_matrix(probe.gradients)
        self.last_cosines = cos
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        metrics = {f"align/cos/{names[i]}__{names[j]}": float(cos[i, j]) for i, j in pairs}
        metrics["align/cos_mean"] = sum(metrics.values()) / len(pairs)
        metrics["tradeoff/mtl_loss"] = sum(probe.losses) / len(probe.losses)
        se = math.nan
        if probe.products:
            se = cos_mean_standard_error(_gram(probe.gradients), probe.products)
        if not math.isnan(se):  # off, or a task with one probe example
            metrics["tradeoff/cos_mean_se"] = se
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if self.heatmap and isinstance(logger, TensorBoardLogger):
                image = render_heatmap(names, cos.numpy(), title=f"gradient cosine, step {step}")
                logger.experiment.add_image("align/heatmap", image, global_step=step, dataformats="HWC")
        self.csv.append([[step, names[i], names[j], repr(float(cos[i, j]))] for i, j in pairs])
        self.summary.append([[step, repr(metrics["align/cos_mean"]), repr(se), repr(metrics["tradeoff/mtl_loss"])]])


def _gradient(loss: torch.Tensor, shared: list[torch.Tensor]) -> torch.Tensor:
    """The flattened gradient of `loss` w.r.t. `shared` (zeros where unused), in the statistics dtype."""
    grads = torch.autograd.grad(loss, shared, allow_unused=True)
    return widen(flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, shared)]))


def _products(gradients: torch.Tensor, loss: torch.Tensor, shared: list[torch.Tensor]) -> torch.Tensor:
    """[T] inner products (float64, on CPU) of each task gradient with the gradient of `loss`, parameter by
    parameter: no flattened copy of that gradient, nothing for an unused parameter."""
    grads = torch.autograd.grad(loss, shared, allow_unused=True)
    total = torch.zeros(gradients.shape[0], dtype=torch.float64, device=gradients.device)
    offset = 0
    with torch.autocast(gradients.device.type, enabled=False):
        for g, p in zip(grads, shared):
            if g is not None:
                total += (gradients[:, offset : offset + p.numel()] @ widen(g).reshape(-1)).double()
            offset += p.numel()
    return total.cpu()


def _gram(gradients: torch.Tensor) -> torch.Tensor:
    """[T, T] inner products (float64, on CPU) of the rows, taken with autocast off."""
    with torch.autocast(gradients.device.type, enabled=False):
        return (gradients @ gradients.T).double().cpu()


def cosine_matrix(gradients: torch.Tensor) -> torch.Tensor:
    """[T, T] cosines (float64, on CPU) of the rows of a [T, D] matrix; 0 where a row is zero. The Gram matrix is
    taken in float32 or better (16-bit rows are widened) with autocast off."""
    gram = _gram(widen(gradients))
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
