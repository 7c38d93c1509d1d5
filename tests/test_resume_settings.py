"""The command's configuration is the run's configuration. A resume whose settings that define the run (model,
algorithm, optimizer, data, seed, precision) differ from the checkpoint's is refused before anything is written,
listing each key old -> new; settings that extend or observe a run may change; `--allow_changed_config true`
continues with the new values on purpose, uses them and records them. LightningCLI alone silently replaced the
command's model and algorithm with the checkpoint's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from tests.helpers import SYNTHETIC, load_checkpoint, log_dir, run_cli

SR = str(SYNTHETIC / "sequential_reptile.yaml")


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture
def sr_run(tmp_path: Path) -> Path:
    return log_dir(run_cli(["--config", SR, "--trainer.max_steps=15"], tmp_path / "logs"))


def resume_args(run: Path, *args: str, config: str | None = None) -> list[str]:
    return [
        "--config",
        config or str(run / "config.yaml"),
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        *args,
    ]


def test_a_checkpoint_of_another_algorithm_is_refused_and_its_run_left_untouched(tmp_path: Path) -> None:
    pcgrad = log_dir(run_cli(["--config", str(SYNTHETIC / "pcgrad.yaml"), "--trainer.max_steps=4"], tmp_path / "p"))
    before = snapshot(pcgrad.parent)
    listed = r"\n  model.algorithm.class_path: 'lightning_modules.algorithms.pcgrad.PCGrad' -> '.*SequentialReptile'"
    with pytest.raises(ValueError, match=r"a resume cannot change .*" + listed):
        run_cli(resume_args(pcgrad, config=SR), tmp_path / "p")
    assert snapshot(pcgrad.parent) == before  # its config.yaml is not rewritten, nothing is added
    with pytest.raises(ValueError, match="another algorithm cannot take over this one's state"):
        run_cli([*resume_args(pcgrad, config=SR), "--allow_changed_config=true"], tmp_path / "p")  # never possible
    assert snapshot(pcgrad.parent) == before


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (["--model.algorithm.inner_steps=20"], "model.algorithm.init_args.inner_steps: 10 -> 20"),
        pytest.param(["--model.algorithm.outer_lr=0.3"], "outer_lr: 0.1 -> 0.3", marks=pytest.mark.slow),
        pytest.param(["--optimizer.lr=0.01"], "optimizer.init_args.lr: 0.05 -> 0.01", marks=pytest.mark.slow),
        (["--trainer.precision=64-true"], "trainer.precision: '32-true' -> '64-true'"),
        (
            ["--data.tasks.init_args.batch_size=2", "--model.algorithm.q=1.0"],
            r"2 settings.*\n.*batch_size: 1 -> 2.*"
            r"\n.*q: 0.2 -> 1.0",
        ),
    ],
    ids=["K", "eta", "lr", "precision", "two"],
)
def test_a_changed_setting_is_refused_naming_old_and_new(sr_run: Path, args: list[str], listed: str) -> None:
    before = snapshot(sr_run)
    with pytest.raises(ValueError, match=listed) as refused:
        run_cli(resume_args(sr_run, *args, "--trainer.max_steps=30"), sr_run.parents[2])
    assert "--allow_changed_config true" in str(refused.value)
    assert snapshot(sr_run) == before


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (["--seed_everything=3"], "seed_everything: 42 -> 3"),
        pytest.param(["--data.seed=5"], "data.seed: 1234 -> 5", marks=pytest.mark.slow),
    ],
    ids=["seed", "data-seed"],
)
def test_a_random_stream_cannot_change_even_on_purpose(sr_run: Path, args: list[str], listed: str) -> None:
    before = snapshot(sr_run)
    with pytest.raises(ValueError, match=f"a resume cannot change .*\n  {listed}\n.*random streams"):
        run_cli(resume_args(sr_run, *args, "--allow_changed_config=true"), sr_run.parents[2])
    assert snapshot(sr_run) == before


def test_settings_that_extend_or_observe_a_run_may_change(sr_run: Path) -> None:
    args = ["--trainer.max_steps=30", "--trainer.log_every_n_steps=3", "--checkpoint.every_n_train_steps=7",
            "--trainer.callbacks.init_args.plot=false"]  # fmt: skip
    run_cli(resume_args(sr_run, *args), sr_run.parents[2])
    assert load_checkpoint(sr_run / "checkpoints" / "last.ckpt")["global_step"] == 30
    assert yaml.safe_load((sr_run / "config.yaml").read_text())["trainer"]["max_steps"] == 30
    assert not (sr_run / "config_changes.yaml").exists()


def test_changes_accepted_on_purpose_are_used_and_recorded(sr_run: Path) -> None:
    args = ["--model.algorithm.inner_steps=4", "--trainer.max_steps=30", "--allow_changed_config=true"]
    cli = run_cli(resume_args(sr_run, *args), sr_run.parents[2])
    assert cli.model.algorithm.inner_steps == 4  # the command's value is trained with, not the checkpoint's
    checkpoint = load_checkpoint(sr_run / "checkpoints" / "last.ckpt")
    assert checkpoint["multitask"]["run_config"]["model"]["algorithm"]["init_args"]["inner_steps"] == 4
    saved = yaml.safe_load((sr_run / "config.yaml").read_text())
    assert saved["model"]["algorithm"]["init_args"]["inner_steps"] == 4
    assert saved["allow_changed_config"] is False  # a later resume from config.yaml must ask again
    (change,) = yaml.safe_load((sr_run / "config_changes.yaml").read_text())
    assert change["at_step"] == 15 and change["resumed_from"].endswith("last.ckpt")
    assert change["changed"] == {"model.algorithm.init_args.inner_steps": {"old": 10, "new": 4}}
    # The next resume compares with the new values: the run's own config.yaml continues without a word.
    run_cli(resume_args(sr_run, "--trainer.max_steps=35"), sr_run.parents[2])
    assert load_checkpoint(sr_run / "checkpoints" / "last.ckpt")["global_step"] == 35


def test_evaluation_compares_the_model_it_loads_the_weights_into(sr_run: Path) -> None:
    ckpt = ["--ckpt_path", str(sr_run / "checkpoints" / "last.ckpt")]
    run_cli(["--config", str(sr_run / "config.yaml"), *ckpt], sr_run.parents[2], subcommand="test")
    with pytest.raises(ValueError, match="model.algorithm.class_path"):
        run_cli(["--config", str(SYNTHETIC / "mtl.yaml"), *ckpt], sr_run.parents[2], subcommand="validate")
