"""Shared test utilities: in-process CLI runs under a temporary log root, a tiny multi-task model with
dropout and per-task random data (so RNG, optimizer and loader state all matter for exact resume), and a
callback that records what each rank did at every step."""

from __future__ import annotations

import csv
import math
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from torch import nn

from datamodules.task import TaskDataModule
from lightning_modules.cli import MultiTaskCLI
from lightning_modules.models.base import TaskModel, TaskOutput

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "configs" / "synthetic"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


# --------------------------------------------------------------------------- running the CLI
def run_cli(args: list[str], root: Path, subcommand: str | None = "fit") -> MultiTaskCLI:
    """`python train.py <subcommand> *args` in this process (no ~15 s interpreter start), logging under
    `root` (trainer.default_root_dir) instead of the repository's logs/. `subcommand=None` only parses and
    instantiates (LightningCLI's run=False)."""
    args = [*args, f"--trainer.default_root_dir={root}", *QUIET]
    with mock.patch.object(sys, "argv", sys.argv[:1]):  # LightningCLI warns when pytest's own args are there
        if subcommand is None:
            return MultiTaskCLI(args=args, run=False)
        return MultiTaskCLI(args=[subcommand, *args])


def print_config(tmp_path: Path, capsys: Any, *args: str) -> dict:
    """What `train.py fit ARGS --print_config` prints, parsed (the exit must be clean)."""
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        run_cli([*args, "--print_config"], tmp_path)
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def log_dir(cli: MultiTaskCLI) -> Path:
    """The run's version directory (trajectory.csv, checkpoints/, config.yaml)."""
    return Path(cli.trainer.log_dir)


def read_trajectory(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Bitwise equality of nested checkpoint entries (tensors compared with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(reference: Path, other: Path, steps: int, trajectory: bool = True) -> None:
    """Two run directories ended in the same state at `steps`: parameters, optimizer, algorithm state (φ, inner
    step, ...), the training RNG, the loader / schedule position and every trajectory.csv row, bitwise."""
    a, b = (
        load_checkpoint(reference / "checkpoints" / "last.ckpt"),
        load_checkpoint(other / "checkpoints" / "last.ckpt"),
    )
    assert a["global_step"] == b["global_step"] == steps
    assert_identical(a["state_dict"], b["state_dict"], "parameters")
    assert_identical(a["optimizer_states"], b["optimizer_states"], "optimizer")
    assert_identical(a["multitask"], b["multitask"], "multitask")
    loader = ("loops", "fit_loop", "state_dict", "combined_loader")
    assert_identical(_get(a, loader), _get(b, loader), ".".join(loader))
    if trajectory:
        rows = read_trajectory(reference / "trajectory.csv")
        assert len(rows) > steps and read_trajectory(other / "trajectory.csv") == rows


def _get(node: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        node = node[key]
    return node


def add_callback(class_path: str, **init_args: Any) -> str:
    """A `--trainer.callbacks+=...` argument that appends a callback to those of the config."""
    return "--trainer.callbacks+=" + yaml.safe_dump({"class_path": class_path, "init_args": init_args}, width=1e9)


def best_checkpoint_callback(**schedule: Any) -> str:
    """A `--trainer.callbacks+=` argument for the run's best-validation checkpoint (lowest val/avg/loss, one file
    best-{step}.ckpt); `schedule` says when it saves (every_n_train_steps=3, every_n_epochs=1, ...)."""
    return add_callback(
        "lightning.pytorch.callbacks.ModelCheckpoint",
        monitor="val/avg/loss",
        mode="min",
        save_top_k=1,
        filename="best-{step}",
        **schedule,
    )


def tiny_config(
    path: Path,
    algorithm: dict[str, Any],
    *,
    tasks: dict[str, int] | None = None,
    dropout: float = 0.25,
    optimizer: dict[str, Any] | None = None,
    steps_per_epoch: int = 6,
    max_steps: int = 12,
    batch_size: int = 4,
    every_n_train_steps: int = 100,
    nan_at_step: int | None = None,
    trajectory: bool = True,
) -> Path:
    """Writes a config for the tiny model (2-3 tasks of random regression data) and returns its path."""
    tasks = tasks or {"a": 24, "b": 40}
    model_args: dict[str, Any] = {"tasks": list(tasks), "dropout": dropout}
    if nan_at_step is not None:
        model_args["nan_at_step"] = nan_at_step
    config = {
        "seed_everything": 7,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": max_steps,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": (
                [{"class_path": "callbacks.TrajectoryRecorder", "init_args": {"plot": False}}] if trajectory else []
            ),
        },
        "checkpoint": {"every_n_train_steps": every_n_train_steps},
        "model": {
            "model": {"class_path": "tests.helpers.TinyTaskModel", "init_args": model_args},
            "algorithm": algorithm,
        },
        "data": {
            "tasks": [
                {
                    "class_path": "tests.helpers.RandomRegressionTask",
                    "init_args": {"name": name, "size": size, "batch_size": batch_size},
                }
                for name, size in tasks.items()
            ],
            "seed": 11,
            "steps_per_epoch": steps_per_epoch,
        },
        "optimizer": optimizer or {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --------------------------------------------------------------------------- the tiny model and data
class TinyTaskModel(TaskModel):
    """tanh(Linear) trunk with dropout, shared by every task, and one linear regression head per task.

    `point()` (two trunk weights) lets TrajectoryRecorder write a row per step, so trajectory.csv records
    the task order. `nan_at_step`: the training loss is NaN from that (1-based) training forward on.
    """

    def __init__(
        self, tasks: list[str], in_dim: int = 4, hidden: int = 8, dropout: float = 0.0, nan_at_step: int | None = None
    ) -> None:
        super().__init__()
        self.trunk = nn.Linear(in_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({task: nn.Linear(hidden, 1) for task in tasks})
        self.nan_at_step = nan_at_step
        self.training_forwards = 0

    def check_tasks(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in self.heads]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}: TinyTaskModel has heads for {sorted(self.heads)}")

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        hidden = self.dropout(torch.tanh(self.trunk(batch["x"])))
        preds = self.heads[task](hidden).squeeze(-1)
        loss = nn.functional.mse_loss(preds, batch["y"])
        if self.training:
            self.training_forwards += 1
            if self.nan_at_step is not None and self.training_forwards >= self.nan_at_step:
                loss = loss * float("nan")
        return TaskOutput(loss=loss, preds=preds, targets=batch["y"])

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"trunk.{n}", p) for n, p in self.trunk.named_parameters()]

    def point(self) -> tuple[float, float]:
        w = self.trunk.weight.detach()
        return float(w[0, 0]), float(w[0, 1])


class RandomRegressionTask(TaskDataModule):
    """y = x·w_task + noise with x ~ N(0, I); the data depend only on (seed, name). Each example carries
    its `index`, so tests can see which examples every rank trained on."""

    def __init__(self, name: str, size: int = 24, in_dim: int = 4, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__(name=name, batch_size=batch_size)
        self.size, self.in_dim, self.seed = size, in_dim, seed

    def setup(self, stage: str) -> None:
        self.train_dataset = make_examples(self.name, self.size, self.in_dim, self.seed)
        held_out = make_examples(self.name, 8, self.in_dim, self.seed + 1)
        self.val_dataset = held_out
        self.test_dataset = held_out


def make_examples(name: str, size: int, in_dim: int, seed: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    w = torch.randn(in_dim, generator=generator)
    x = torch.randn(size, in_dim, generator=generator)
    y = x @ w + 0.1 * torch.randn(size, generator=generator)
    return [{"x": x[i], "y": y[i], "index": i} for i in range(size)]


# --------------------------------------------------------------------------- recording callback
class StepRecorder(Callback):
    """Records, on every rank: the initial parameters, each training batch's (task, example indices), and
    after every outer update (Reptile family) or step (MTL family) the step, φ and all parameters.

    With `out_dir`, each rank writes `rank<r>.pt` at the end of training (for DDP runs in subprocesses).
    """

    def __init__(self, out_dir: str | None = None) -> None:
        self.out_dir = out_dir
        self.rank = 0
        self.initial: dict[str, torch.Tensor] = {}
        self.batches: list[list[tuple[str, list[int]]]] = []
        self.updates: list[dict[str, Any]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.rank = trainer.global_rank
            pl_module.add_step_listener(self._on_step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.initial = _params(pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self.batches.append([(task, data["index"].tolist()) for task, data in batch])

    def _on_step(self, module: Any, phase: str, tasks: list[str]) -> None:
        if phase == "inner":
            return
        phi = getattr(module.algorithm, "phi", None)
        self.updates.append(
            {
                "step": module.global_step,
                "phase": phase,
                "phi": [p.detach().clone() for p in phi] if phi is not None else None,
                "params": _params(module),
            }
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.out_dir is not None:
            Path(self.out_dir).mkdir(parents=True, exist_ok=True)
            record = {"initial": self.initial, "batches": self.batches, "updates": self.updates}
            torch.save(record, Path(self.out_dir) / f"rank{self.rank}.pt")


def _params(module: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.model.named_parameters()}


def recorder(cli: MultiTaskCLI) -> StepRecorder:
    return next(cb for cb in cli.trainer.callbacks if isinstance(cb, StepRecorder))


# --------------------------------------------------------------------------- hand-worked algorithm steps
class LinearLoss(TaskModel):
    """The loss -c·θ of a batch `c`, whatever the task: its gradient is -c."""

    def __init__(self, start: list[float]) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(start))

    def forward(self, task: str, batch: torch.Tensor) -> TaskOutput:
        return TaskOutput(loss=-(batch * self.theta).sum())


class LinearStepModule:
    """A `TrainingModule` (what the Reptile family uses of MultiTaskModule) with a loss -c·θ: one SGD step
    with lr 1 on a batch `c` moves θ by exactly +c, so trajectories can be worked out by hand."""

    def __init__(self, start: list[float], task_names: list[str], max_steps: int = -1) -> None:
        self.model = LinearLoss(start)
        self.theta = self.model.theta
        self.optimizer = torch.optim.SGD([self.theta], lr=1.0)
        self.task_names = task_names
        self.trainer = SimpleNamespace(max_steps=max_steps)
        self.events: list[tuple[str, list[str], list[float]]] = []
        self.logged: dict[str, float] = {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.theta]

    def task_loss(self, task: str, batch: torch.Tensor) -> torch.Tensor:
        return self.model(task, batch).loss

    def manual_backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer

    def reset_optimizer_state(self) -> None:
        self.optimizer.state.clear()

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def log(self, name: str, value: Any, **kwargs: Any) -> None:
        self.logged[name] = float(value)

    def emit(self, phase: str, tasks: list[str]) -> None:
        self.events.append((phase, tasks, self.theta.detach().tolist()))


def step(algorithm: Any, module: LinearStepModule, task: str, c: list[float]) -> None:
    algorithm.training_step(module, [(task, torch.tensor(c))])


# --------------------------------------------------------------------------- the synthetic landscape
OPTIMA = {"t1": (0.0, 10.0), "t2": (0.0, 0.0), "t3": (10.0, 0.0)}


def grad_landscape(task: str, x: float, y: float) -> tuple[float, float]:
    """∇ of L_i(φ) = -200 exp(-0.2 ||φ - x_i||): 40 exp(-0.2 r) (φ - x_i) / r, in float64."""
    dx, dy = x - OPTIMA[task][0], y - OPTIMA[task][1]
    r = math.hypot(dx, dy)
    scale = 40.0 * math.exp(-0.2 * r) / r
    return scale * dx, scale * dy
