"""Exact resume under DDP: a two-process (gloo) Sequential Reptile run stopped in the middle of an inner loop and
resumed ends bitwise identical to an uninterrupted one. Each rank's dropout stream is its own here (seeded by
rank), so the checkpoint must carry every rank's RNG, not rank 0's for all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.helpers import QUIET, REPO, add_callback, assert_identical, load_checkpoint, tiny_config

pytestmark = pytest.mark.slow
K, STOP, TOTAL = 3, 5, 9


class SeedByRank(Callback):
    """Gives each rank its own dropout stream at the start of a fresh run (a resume restores the saved ones)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == 0:
            torch.manual_seed(1000 + trainer.global_rank)


def fit(tmp_path: Path, config: Path, root: Path, max_steps: int, ckpt: Path | None = None) -> None:
    command = [
        sys.executable, str(REPO / "train.py"), "fit", "--config", str(config),
        "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.accelerator=cpu", "--trainer.devices=2",
        f"--trainer.max_steps={max_steps}", f"--trainer.default_root_dir={root}",
        add_callback("tests.test_ddp_resume.SeedByRank"), *QUIET,
    ]  # fmt: skip
    if ckpt is not None:
        command += ["--ckpt_path", str(ckpt)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def last(root: Path) -> Path:
    (path,) = root.rglob("checkpoints/last.ckpt")
    return path


def test_two_rank_run_resumed_mid_inner_loop_is_exact(tmp_path: Path) -> None:
    algorithm = {
        "class_path": "lightning_modules.algorithms.SequentialReptile",
        "init_args": {"inner_steps": K, "outer_lr": 0.5, "q": 0.5},
    }
    config = tiny_config(tmp_path / "cfg" / "ddp.yaml", algorithm, tasks={"a": 24, "b": 40}, every_n_train_steps=100)
    fit(tmp_path, config, tmp_path / "straight", TOTAL)
    fit(tmp_path, config, tmp_path / "stopped", STOP)
    stopped = load_checkpoint(last(tmp_path / "stopped"))
    assert stopped["global_step"] == STOP and stopped["multitask"]["algorithm_state"]["k"] == STOP % K
    ranks: list[dict[str, Any]] = stopped["multitask"]["rng"]["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])  # two streams
    fit(tmp_path, config, tmp_path / "stopped", TOTAL, ckpt=last(tmp_path / "stopped"))

    a, b = load_checkpoint(last(tmp_path / "straight")), load_checkpoint(last(tmp_path / "stopped"))
    assert a["global_step"] == b["global_step"] == TOTAL
    assert_identical(a["state_dict"], b["state_dict"], "parameters")
    assert_identical(a["optimizer_states"], b["optimizer_states"], "optimizer")
    assert_identical(a["multitask"], b["multitask"], "multitask")
