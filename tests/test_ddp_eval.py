"""Validation split across two CPU ranks (gloo) through train.py: every example is evaluated exactly once, in the
same batch as in one process, a rank with none of a task's batches still joins its reduction, and the logged
scores equal the single-process ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection
from torchmetrics.regression import PearsonCorrCoef

from tests.helpers import QUIET, REPO, RandomRegressionTask, TinyTaskModel, make_examples, tiny_config

# Validation sizes and batch: task a has 3 batches (rank 0 evaluates 2, rank 1 one), task b a single one (rank 1
# evaluates none of it).
VAL_SIZES = {"a": 11, "b": 3}
EVAL_BATCH = 4


class ScoredTinyModel(TinyTaskModel):
    """The tiny regression model with per-example metrics: sums (MSE, MAE) and a gathered statistic (Pearson)."""

    def eval_metrics(self, task: str, **options: Any) -> MetricCollection:
        super().eval_metrics(task, **options)
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "pearson": PearsonCorrCoef()})


class SizedEvalTask(RandomRegressionTask):
    """RandomRegressionTask with a validation split of `val_size` examples in batches of `eval_batch_size`."""

    def __init__(self, name: str, size: int = 24, val_size: int = 8, eval_batch_size: int = 4) -> None:
        super().__init__(name=name, size=size)
        self.val_size, self.eval_batch_size = val_size, eval_batch_size

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.val_dataset = make_examples(self.name, self.val_size, self.in_dim, self.seed + 1)


class EvalRecorder(Callback):
    """Writes, per rank, the example indices of every validation batch and the logged scores."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: list[tuple[int, list[int]]] = []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self.batches.append((dataloader_idx, batch["index"].tolist()))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"batches": self.batches, "scores": scores}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _validate(tmp_path: Path, devices: int) -> list[dict[str, Any]]:
    root = tmp_path / f"devices{devices}"
    algorithm = {"class_path": "lightning_modules.algorithms.MTL", "init_args": {"tasks_per_step": 2}}
    config = tiny_config(root / "cfg.yaml", algorithm, tasks={"a": 24, "b": 24})
    raw = yaml.safe_load(config.read_text())
    raw["model"]["model"]["class_path"] = "tests.test_ddp_eval.ScoredTinyModel"
    raw["data"]["tasks"] = [
        {"class_path": "tests.test_ddp_eval.SizedEvalTask",
         "init_args": {"name": name, "val_size": size, "eval_batch_size": EVAL_BATCH}}
        for name, size in VAL_SIZES.items()
    ]  # fmt: skip
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    records = root / "records"
    callback = {"class_path": "tests.test_ddp_eval.EvalRecorder", "init_args": {"out_dir": str(records)}}
    command = [
        sys.executable, str(REPO / "train.py"), "validate", "--config", str(config),
        "--untrained=true", "--trainer.accelerator=cpu", f"--trainer.devices={devices}",
        *(["--trainer.strategy=ddp"] if devices > 1 else []),
        f"--trainer.default_root_dir={root / 'logs'}",
        "--trainer.callbacks+=" + yaml.safe_dump(callback, width=1e9), *QUIET,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((records / f"rank{r}.json").read_text()) for r in range(devices)]


@pytest.mark.slow
def test_validation_is_split_across_ranks_with_the_single_process_scores(tmp_path: Path) -> None:
    (single,) = _validate(tmp_path, devices=1)
    zero, one = _validate(tmp_path, devices=2)

    tasks = list(VAL_SIZES)
    for loader, task in enumerate(tasks):
        batches = [b for i, b in single["batches"] if i == loader]
        ranks = [[b for i, b in record["batches"] if i == loader] for record in (zero, one)]
        assert ranks[0] == batches[0::2] and ranks[1] == batches[1::2], f"{task}: not the one-process batches"
        seen = sorted(x for rank in ranks for b in rank for x in b)
        assert seen == list(range(VAL_SIZES[task])), f"{task}: examples evaluated {seen}"
    assert not [b for i, b in one["batches"] if i == tasks.index("b")]  # rank 1 had none of b's batch

    assert zero["scores"] == one["scores"]
    assert sorted(zero["scores"]) == sorted(single["scores"])
    for key, value in single["scores"].items():
        assert zero["scores"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    assert {f"val/{t}/{m}" for t in tasks for m in ("loss", "mse", "mae", "pearson")} <= set(single["scores"])
    assert torch.isfinite(torch.tensor(list(single["scores"].values()))).all()
