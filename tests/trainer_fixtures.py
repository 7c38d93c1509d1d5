"""What the callback tests (alignment, drift, masked LM) fit with: a logger that keeps every logged metric, a tiny
token-classification task with the encoder config it fits, and a plain CPU Trainer without checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger

from datamodules.multitask import MultiTaskDataModule
from datamodules.task import TaskDataModule
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
