"""The LightningCLI behind train.py: every synthetic config instantiates, --print_config shows the defaults
(AdamW lr 3e-5, the algorithm's arguments) and no optimizer argument leaks from that default into another
optimizer class, and validate/test run from a checkpoint, evaluating the Reptile family at φ."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from datamodules.multitask import MultiTaskDataModule
from lightning_modules.models.synthetic import SyntheticLandscape
from lightning_modules.multitask import MultiTaskModule
from tests.helpers import (
    OPTIMA,
    SYNTHETIC,
    best_checkpoint_callback,
    load_checkpoint,
    log_dir,
    print_config,
    read_trajectory,
    run_cli,
)

CONFIGS = sorted(p for p in SYNTHETIC.glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_synthetic_config_instantiates(tmp_path: Path, config: Path) -> None:
    cli = run_cli(["--config", str(config)], tmp_path, subcommand=None)
    assert isinstance(cli.model, MultiTaskModule) and isinstance(cli.model.model, SyntheticLandscape)
    assert isinstance(cli.datamodule, MultiTaskDataModule) and cli.datamodule.task_names == ["t1", "t2", "t3"]
    expected = yaml.safe_load(config.read_text())["model"]["algorithm"]["class_path"].rsplit(".", 1)[1]
    assert type(cli.model.algorithm).__name__ == expected
    assert cli.datamodule.schedule == cli.model.algorithm.schedule()  # attached before any work


def test_print_config_shows_the_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "no_optimizer.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": str(SYNTHETIC / "_data.yaml"),
                "trainer": str(SYNTHETIC / "_trainer.yaml"),
                "model": {
                    "model": str(SYNTHETIC / "_model.yaml"),
                    "algorithm": {"class_path": "lightning_modules.algorithms.SequentialReptile"},
                },
            }
        )
    )
    printed = print_config(tmp_path, capsys, "--config", str(config))
    assert printed["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert printed["optimizer"]["init_args"]["lr"] == 3e-5
    algorithm = printed["model"]["algorithm"]
    assert algorithm["class_path"] == "lightning_modules.algorithms.SequentialReptile"
    assert algorithm["init_args"] == {
        "inner_steps": 1000,
        "outer_lr": 0.1,
        "q": 0.2,
        "reset_inner_optimizer": False,
        "outer_lr_final": None,
    }
    assert printed["checkpoint"]["save_last"] is True
    assert printed["trainer"]["use_distributed_sampler"] is False


def test_naming_another_optimizer_inherits_nothing_harmful(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """jsonargparse carries the default's init args over to a newly named class; SGD must not get a weight
    decay it was not given (it did get AdamW's 0.01, which broke the synthetic trajectories)."""
    printed = print_config(
        tmp_path,
        capsys,
        "--config",
        str(SYNTHETIC / "sequential_reptile.yaml"),
        "--optimizer",
        "torch.optim.SGD",
        "--optimizer.lr",
        "0.05",
    )
    assert printed["optimizer"]["class_path"] == "torch.optim.SGD"
    assert printed["optimizer"]["init_args"]["lr"] == 0.05
    assert printed["optimizer"]["init_args"]["weight_decay"] == 0.0
    assert printed["optimizer"]["init_args"]["momentum"] == 0.0


def landscape_loss(task: str, x: float, y: float) -> float:
    return -200.0 * math.exp(-0.2 * math.hypot(x - OPTIMA[task][0], y - OPTIMA[task][1]))


def test_validate_and_test_from_a_checkpoint_evaluate_phi(tmp_path: Path) -> None:
    args = ["--config", str(SYNTHETIC / "sequential_reptile.yaml"), "--model.algorithm.inner_steps=5"]
    fit_dir = log_dir(run_cli([*args, "--trainer.max_steps=7", "--trainer.limit_val_batches=0"], tmp_path))
    last = fit_dir / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    assert checkpoint["global_step"] == 7
    phi = checkpoint["multitask"]["algorithm_state"]["phi"][0].tolist()
    outer = [r for r in read_trajectory(fit_dir / "trajectory.csv") if r["phase"] == "outer"][-1]
    assert outer["step"] == "5" and phi == pytest.approx([float(outer["x"]), float(outer["y"])])
    theta = checkpoint["state_dict"]["model.phi"].tolist()
    assert theta != pytest.approx(phi)  # mid-trajectory: the parameters are θ^(2), not φ

    for subcommand, split in (("validate", "val"), ("test", "test")):
        cli = run_cli([*args, "--ckpt_path", str(last)], tmp_path, subcommand=subcommand)
        assert log_dir(cli) == fit_dir  # logs into the run's version directory
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        for task in OPTIMA:
            assert metrics[f"{split}/{task}/loss"] == pytest.approx(landscape_loss(task, *phi), rel=1e-5)
        assert metrics[f"{split}/avg/loss"] == pytest.approx(sum(landscape_loss(t, *phi) for t in OPTIMA) / 3, 1e-5)
        assert torch.equal(cli.model.model.phi.detach(), torch.tensor(theta))  # θ restored after evaluation

    # The run's own saved config.yaml (it names the TensorBoard logger without a version) logs there too.
    cli = run_cli(["--config", str(fit_dir / "config.yaml"), "--ckpt_path", str(last)], tmp_path, subcommand="test")
    assert log_dir(cli) == fit_dir
    assert not (fit_dir.parent / "version_1").exists()


def test_ckpt_path_best_resolves_to_the_runs_best_checkpoint_in_a_new_process(tmp_path: Path) -> None:
    best_cb = best_checkpoint_callback(every_n_train_steps=3)
    args = ["--config", str(SYNTHETIC / "mtl.yaml"), "--trainer.max_steps=9", "--trainer.val_check_interval=3"]
    fit_dir = log_dir(run_cli([*args, best_cb], tmp_path))
    saved = sorted(p.name for p in (fit_dir / "checkpoints").glob("best-*.ckpt"))
    assert len(saved) == 1
    config = ["--config", str(fit_dir / "config.yaml")]
    cli = run_cli([*config, "--ckpt_path", "best"], tmp_path, subcommand="test")
    assert Path(cli.trainer.ckpt_path) == fit_dir / "checkpoints" / saved[0]
    assert log_dir(cli) == fit_dir

    # A run without a monitoring checkpoint: the error says what is missing.
    plain_dir = log_dir(run_cli(["--config", str(SYNTHETIC / "mtl.yaml"), "--trainer.max_steps=2"], tmp_path))
    with pytest.raises(ValueError, match="exactly one ModelCheckpoint with a monitor"):
        run_cli(["--config", str(plain_dir / "config.yaml"), "--ckpt_path", "best"], tmp_path, subcommand="test")


def test_best_is_found_when_the_last_step_is_both_a_save_and_a_validation(tmp_path: Path) -> None:
    """last.ckpt was written at the last step before that step's validation chose a new best (and deleted the
    old one), so it recorded a file that no longer existed; it is now written again after the validation."""
    best_cb = best_checkpoint_callback(every_n_epochs=1, save_on_train_epoch_end=False)
    args = ["--config", str(SYNTHETIC / "mtl.yaml"), "--trainer.max_steps=9", "--trainer.val_check_interval=3"]
    fit_dir = log_dir(run_cli([*args, "--checkpoint.every_n_train_steps=3", best_cb], tmp_path))
    (best,) = (fit_dir / "checkpoints").glob("best-*.ckpt")
    assert best.name == "best-step=9.ckpt"  # the loss falls at every validation on this landscape
    states = load_checkpoint(fit_dir / "checkpoints" / "last.ckpt")["callbacks"]
    recorded = [s["best_model_path"] for k, s in states.items() if k.startswith("ModelCheckpoint")]
    assert recorded == [str(best)]
    cli = run_cli(["--config", str(fit_dir / "config.yaml"), "--ckpt_path", "best"], tmp_path, subcommand="test")
    assert Path(cli.trainer.ckpt_path) == best
