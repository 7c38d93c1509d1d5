"""What the callback tests (alignment, drift, masked LM) fit with: a logger that keeps every logged metric, a tiny
token-classification task with the encoder config it fits, and a plain CPU Trainer without checkpoints; and what the
gradient-surgery tests (aggregator, PCGrad) fit: a shared layer with per-task heads, on synthetic tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch import nn

from datamodules.multitask import MultiTaskDataModule
from datamodules.synthetic import SyntheticTaskDataModule
from datamodules.task import TaskDataModule
from lightning_modules.models.base import TaskModel, TaskOutput
from lightning_modules.multitask import MultiTaskModule
from tests.schema_fixtures import tiny_bert_config

# One layer is enough for the callbacks; ids 1..49 of TokenTask fit its vocabulary of 50.
TOKEN_TASK_BERT: dict[str, Any] = {**tiny_bert_config(50, max_positions=16), "num_hidden_layers": 1}


class RecordingLogger(Logger):
    """Keeps every log_metrics call, to check what the callback logged and at which step."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.records.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


class TokenTask(TaskDataModule):
    """Random token sequences with random labels (a tiny text-classification task)."""

    def __init__(self, name: str, seed: int, n: int = 24, seq: int = 8, batch_size: int = 4) -> None:
        super().__init__(name=name, batch_size=batch_size)
        self.seed, self.n, self.seq = seed, n, seq

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(self.seed)
        ids = torch.randint(1, 50, (self.n, self.seq), generator=g)
        labels = torch.randint(0, 2, (self.n,), generator=g)
        rows = [{"input_ids": ids[i], "attention_mask": torch.ones(self.seq, dtype=torch.long), "labels": labels[i]}
                for i in range(self.n)]  # fmt: skip
        self.train_dataset, self.val_dataset, self.test_dataset = rows, rows[:4], rows[:4]


def fit(module: MultiTaskModule, data: MultiTaskDataModule, steps: int, root: Path, callbacks: list, logger: Any,
        optimizer: Any = torch.optim.SGD, **optim_kwargs: Any) -> pl.Trainer:  # fmt: skip
    """`steps` training steps on CPU with `optimizer(**optim_kwargs)`, no validation, checkpoint or progress bar."""
    module.configure_optimizers = lambda: optimizer(module.parameters(), **optim_kwargs)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks, default_root_dir=root,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return trainer


class SharedWithHeads(TaskModel):
    """x -> shared linear (width `width`) -> per-task head, squared error to a per-task target; x from the example
    index. Seeded: two instances start from the same weights."""

    def __init__(self, tasks: list[str], width: int = 2) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.shared = nn.Linear(2, width)
        self.heads = nn.ModuleDict({t: nn.Linear(width, 1) for t in tasks})
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        self.targets = {t: float(k + 1) * (-1) ** k for k, t in enumerate(tasks)}

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"shared.{n}", p) for n, p in self.shared.named_parameters()]

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        x = torch.stack([batch["index"].float() / 10.0, torch.ones(len(batch["index"]))], dim=1)
        out = self.heads[task](torch.tanh(self.shared(x))).squeeze(-1)
        return TaskOutput(loss=((out - self.targets[task]) ** 2).sum())


def fit_synthetic(
    model: TaskModel, algorithm: Any, tasks: list[str], steps: int, lr: float, tmp_path: Path
) -> MultiTaskModule:
    """`steps` plain-SGD steps of `algorithm` on synthetic tasks of 20 examples each, without logger or checkpoint."""
    data = MultiTaskDataModule([SyntheticTaskDataModule(t, size=20) for t in tasks], seed=7, steps_per_epoch=steps)
    module = MultiTaskModule(model, algorithm)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=lr)  # LightningCLI's role
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    return module
