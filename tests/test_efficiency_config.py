"""configs/offline/_trainer_efficiency.yaml validates every tenth of the epoch with the comparison's checkpoint
rule and the Efficiency callback, and nothing else; validating more often leaves training bitwise identical, so
its runs train as the committed ones."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from datamodules.multitask import MultiTaskDataModule
from lightning_modules.algorithms.sequential_reptile import SequentialReptile
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.multitask import MultiTaskModule
from tests.helpers import print_config
from tests.trainer_fixtures import TOKEN_TASK_BERT, TokenTask

OFFLINE = Path(__file__).resolve().parents[1] / "configs" / "offline"


def test_validation_ten_times_an_epoch_the_same_best_checkpoint_rule_and_efficiency() -> None:
    base = yaml.safe_load((OFFLINE / "_trainer.yaml").read_text())
    efficiency = yaml.safe_load((OFFLINE / "_trainer_efficiency.yaml").read_text())
    assert efficiency["val_check_interval"] == 0.1 and set(efficiency) == {"val_check_interval", "callbacks"}
    (checkpoint,) = [c for c in base["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert efficiency["callbacks"] == [checkpoint, {"class_path": "callbacks.efficiency.Efficiency"}]


def test_given_after_a_method_config_it_keeps_the_rest_of_the_trainer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(OFFLINE / "mtl.yaml"), "--trainer", str(OFFLINE / "_trainer_efficiency.yaml")]
    trainer = print_config(tmp_path, capsys, *args)["trainer"]
    base = yaml.safe_load((OFFLINE / "_trainer.yaml").read_text())
    kept = {k: v for k, v in base.items() if k not in ("callbacks", "val_check_interval")}
    assert {k: trainer[k] for k in kept} == kept and trainer["val_check_interval"] == 0.1


def _train(val_check_interval: int | None, root: Path) -> list[torch.Tensor]:
    pl.seed_everything(3)
    config = {**TOKEN_TASK_BERT, "hidden_dropout_prob": 0.2}  # dropout: training draws from the RNG
    model = EncoderClassifier(config=config, head="per_task", tasks=["a", "b", "c"], dropout=0.3)
    module = MultiTaskModule(model, SequentialReptile(inner_steps=3, outer_lr=0.5))
    module.configure_optimizers = lambda: torch.optim.AdamW(module.parameters(), lr=1e-2)
    data = MultiTaskDataModule([TokenTask(n, seed=i) for i, n in enumerate("abc")], seed=1)
    trainer = pl.Trainer(
        max_steps=7, accelerator="cpu", devices=1, logger=False, default_root_dir=root, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        val_check_interval=val_check_interval, limit_val_batches=0 if val_check_interval is None else None,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return [p.detach().clone() for p in module.parameters()] + list(module.algorithm.phi)


def test_validating_every_step_leaves_training_bitwise_identical(tmp_path: Path) -> None:
    never = _train(None, tmp_path / "never")
    every_step = _train(1, tmp_path / "every")  # validation (at φ) mid trajectory, its loaders drawing seeds
    assert len(never) == len(every_step)
    assert all(torch.equal(a, b) for a, b in zip(never, every_step))
