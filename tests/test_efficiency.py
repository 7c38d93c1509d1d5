"""Efficiency: cumulative inner steps and task batches per step, a wall clock that leaves out validation and the
other callbacks' work, the CSV, and a resume that continues the totals."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from callbacks.efficiency import Efficiency
from datamodules.multitask import MultiTaskDataModule
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.algorithms.sequential_reptile import SequentialReptile
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.multitask import MultiTaskModule
from tests.helpers import SYNTHETIC, add_callback, load_checkpoint, log_dir, run_cli
from tests.trainer_fixtures import TOKEN_TASK_BERT, RecordingLogger, TokenTask

PAUSE = 0.15


class Slow(Callback):
    """Work that is not training: after every step and at every validation's end."""

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(PAUSE)

    def on_validation_end(self, *args: Any) -> None:
        time.sleep(PAUSE)


def train(algorithm: Any, steps: int, root: Path, callbacks: list[Callback]) -> pl.Trainer:
    model = EncoderClassifier(config=TOKEN_TASK_BERT, head="per_task", tasks=["a", "b", "c"])
    module = MultiTaskModule(model, algorithm)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.01)
    data = MultiTaskDataModule([TokenTask(n, seed=i) for i, n in enumerate("abc")], seed=1)
    logger = RecordingLogger()
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks, default_root_dir=root,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, val_check_interval=1,
        limit_val_batches=1, num_sanity_val_steps=0, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return trainer


@pytest.mark.parametrize(("tasks_per_step", "steps"), [(2, 3), pytest.param(1, 3, marks=pytest.mark.slow)])
def test_counts_and_a_clock_without_validation_or_other_callbacks(
    tmp_path: Path, tasks_per_step: int, steps: int
) -> None:
    efficiency = Efficiency()
    algorithm = MTL(tasks_per_step=2) if tasks_per_step == 2 else SequentialReptile(inner_steps=2, outer_lr=0.5)
    start = time.perf_counter()
    trainer = train(algorithm, steps, tmp_path, [Slow(), efficiency])
    elapsed = time.perf_counter() - start
    assert trainer.callbacks[0] is efficiency  # its hooks are the first around the training step
    logger = trainer.logger
    assert isinstance(logger, RecordingLogger)
    records = [(step, m) for step, m in logger.records if "efficiency/wall_s" in m]
    assert [step for step, _ in records] == list(range(1, steps + 1))
    assert [m["efficiency/inner_steps"] for _, m in records] == list(range(1, steps + 1))
    assert [m["efficiency/task_batches"] for _, m in records] == [tasks_per_step * s for s in range(1, steps + 1)]
    walls = [m["efficiency/wall_s"] for _, m in records]
    assert all(b > a for a, b in zip(walls, walls[1:]))
    # Slow paused 2 x PAUSE per step (after the step, and after its validation); none of it is counted: a step
    # of this one-layer model takes milliseconds, so counting even one pause per step would exceed steps x PAUSE.
    assert elapsed > 2 * steps * PAUSE
    assert 0 < walls[-1] < steps * PAUSE
    rows = list(csv.DictReader(open(tmp_path / "efficiency.csv")))
    assert [(int(r["step"]), float(r["wall_s"]), int(r["task_batches"])) for r in rows] == [
        (s, m["efficiency/wall_s"], int(m["efficiency/task_batches"])) for s, m in records
    ]


def test_resume_continues_the_totals(tmp_path: Path) -> None:
    args = ["--config", str(SYNTHETIC / "mtl.yaml"), add_callback("callbacks.efficiency.Efficiency"),
            "--trainer.limit_val_batches=0"]  # fmt: skip
    run = log_dir(run_cli([*args, "--trainer.max_steps=4"], tmp_path))
    saved = load_checkpoint(run / "checkpoints" / "last.ckpt")
    (state,) = [v for k, v in saved["callbacks"].items() if k.startswith("Efficiency")]
    first = list(csv.DictReader(open(run / "efficiency.csv")))
    assert state["wall_s"] == float(first[-1]["wall_s"]) and state["task_batches"] == int(first[-1]["task_batches"])
    resumed = run_cli(
        [
            "--config",
            str(run / "config.yaml"),
            "--trainer.max_steps=7",
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
        ],
        tmp_path,
    )
    assert log_dir(resumed) == run
    rows = list(csv.DictReader(open(run / "efficiency.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 8))
    assert rows[:4] == first
    walls = [float(r["wall_s"]) for r in rows]
    assert all(b > a for a, b in zip(walls, walls[1:]))
    per_step = int(rows[0]["task_batches"])
    assert [int(r["task_batches"]) for r in rows] == [per_step * s for s in range(1, 8)]
