"""Bad input fails with an error that names the problem, before any file is written or step taken; a resume
from a checkpoint of another task set leaves that run untouched; a NaN loss stops training with the task and
step named, keeping the last good checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from datamodules.schedule import IIDSchedule, TaskSampler
from lightning_modules.algorithms import MTL, SequentialReptile
from lightning_modules.multitask import (
    MultiTaskModule,
    NonFiniteLossError,
    NonFiniteParametersError,
    check_checkpoint_compatible,
)
from tests.helpers import SYNTHETIC, load_checkpoint, log_dir, run_cli, tiny_config

SR_CONFIG = str(SYNTHETIC / "sequential_reptile.yaml")


def synthetic_tasks(*names: str) -> str:
    tasks = [{"class_path": "datamodules.SyntheticTaskDataModule", "init_args": {"name": n}} for n in names]
    return "--data.tasks=" + json.dumps(tasks)


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        (SR_CONFIG, ["--model.algorithm.inner_steps=0"], r"inner_steps \(K\) must be >= 1, got 0"),
        (SR_CONFIG, ["--model.algorithm.outer_lr=0"], r"outer_lr \(η\) must be in \(0, 1\], got 0"),
        (SR_CONFIG, ["--model.algorithm.outer_lr=1.5"], r"outer_lr \(η\) must be in \(0, 1\], got 1.5"),
        (SR_CONFIG, ["--model.algorithm.q=-0.2"], r"q must be >= 0, got -0.2"),
        (SR_CONFIG, ["--data.tasks=[]"], "the task list is empty"),
        (SR_CONFIG, [synthetic_tasks("t1", "t9")], r"unknown task\(s\) \['t9'\]"),
        (SR_CONFIG, [synthetic_tasks("t1", "t1")], "task names must be unique, repeated: t1"),
        (
            str(SYNTHETIC / "mtl.yaml"),
            ["--model.algorithm.tasks_per_step=4"],
            r"tasks_per_step=4 is larger than the number of training tasks \(3: t1, t2, t3\)",
        ),
        (str(SYNTHETIC / "mtl.yaml"), ["--model.algorithm.tasks_per_step=0"], "tasks_per_step must be >= 1"),
    ],
    ids=["K<1", "eta=0", "eta>1", "q<0", "no-tasks", "unknown-task", "repeated-task", "m>T", "m<1"],
)
def test_bad_config_fails_before_any_work(tmp_path: Path, config: str, args: list[str], message: str) -> None:
    root = tmp_path / "root"
    with pytest.raises(ValueError, match=message):
        run_cli(["--config", config, *args], root)
    assert not root.exists()  # no log directory, checkpoint or config.yaml was written


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_checkpoint_of_another_task_set_is_refused_and_left_untouched(tmp_path: Path) -> None:
    run_dir = log_dir(run_cli(["--config", SR_CONFIG, "--trainer.max_steps=3"], tmp_path))
    last = run_dir / "checkpoints" / "last.ckpt"
    before = snapshot(run_dir.parent)
    assert "version_0/checkpoints/last.ckpt" in before and "version_0/config.yaml" in before
    resume = ["--config", SR_CONFIG, synthetic_tasks("t1", "t2"), "--ckpt_path", str(last)]
    with pytest.raises(ValueError, match=r"data.tasks\[2\].init_args.name: 't3' -> \(absent\)"):
        run_cli(resume, tmp_path)
    assert snapshot(run_dir.parent) == before  # nothing overwritten, deleted or added (no version_1)
    # Changed settings can be accepted on purpose, but a checkpoint of another task set cannot be continued.
    with pytest.raises(ValueError, match=r"was made with tasks \['t1', 't2', 't3'\], but this run has \['t1', 't2'\]"):
        run_cli([*resume, "--allow_changed_config=true"], tmp_path)
    assert snapshot(run_dir.parent) == before


def test_checkpoint_compatibility_names_the_mismatch() -> None:
    saved = {"multitask": {"task_names": ["a", "b"], "algorithm": "SequentialReptile"}}
    assert check_checkpoint_compatible(saved, ["a", "b"], SequentialReptile()) is saved["multitask"]
    with pytest.raises(ValueError, match=r"made with tasks \['a', 'b'\], but this run has \['b', 'a'\]"):
        check_checkpoint_compatible(saved, ["b", "a"], SequentialReptile())  # the order fixes heads and sampling
    with pytest.raises(ValueError, match="made with algorithm SequentialReptile, but this run uses MTL"):
        check_checkpoint_compatible(saved, ["a", "b"], MTL())
    with pytest.raises(ValueError, match="not written by MultiTaskModule"):
        check_checkpoint_compatible({"state_dict": {}}, ["a", "b"], MTL())


def test_nan_loss_stops_with_task_and_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    n = 4
    algorithm = {
        "class_path": "lightning_modules.algorithms.SequentialReptile",
        "init_args": {"inner_steps": 2, "outer_lr": 0.5, "q": 0.5},
    }
    config = tiny_config(tmp_path / "cfg" / "nan.yaml", algorithm, nan_at_step=n, every_n_train_steps=1)
    replay = TaskSampler(IIDSchedule(tasks_per_step=1, q=0.5), ["a", "b"], [24, 40], seed=11)
    task = [replay.next_tasks()[0] for _ in range(n)][-1]
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss \(nan\) on task '{task}' at training step {n} "):
        run_cli(["--config", str(config)], tmp_path)

    last = next(tmp_path.rglob("last.ckpt"))
    checkpoint = load_checkpoint(last)
    assert checkpoint["global_step"] == n - 1
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    module = MultiTaskModule.load_from_checkpoint(last)
    assert isinstance(module.algorithm, SequentialReptile) and module.algorithm.inner_steps == 2
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][name])


def test_a_non_finite_update_stops_naming_step_and_tasks_and_every_checkpoint_stays_finite(tmp_path: Path) -> None:
    """A finite loss with an absurd learning rate (set on purpose when resuming at step 5): the parameters
    overflow in the update itself."""
    args = ["--config", str(SYNTHETIC / "mtl.yaml"), "--checkpoint.every_n_train_steps=1"]
    run = log_dir(run_cli([*args, "--trainer.max_steps=5"], tmp_path))
    resume = [
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        "--optimizer.lr=1e38",
        "--allow_changed_config=true",
    ]
    with pytest.raises(NonFiniteParametersError, match=r"training step 6 \(tasks t\d, t\d, t\d\) made parameters "
                                                       r"NaN or infinite \(model.phi\)"):  # fmt: skip
        run_cli([*args, *resume, "--trainer.max_steps=50"], tmp_path)
    checkpoints = list(tmp_path.rglob("*.ckpt"))
    assert [load_checkpoint(p)["global_step"] for p in checkpoints] == [5]
    for path in checkpoints:
        checkpoint = load_checkpoint(path)
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values()), path


def test_a_checkpoint_with_non_finite_state_is_never_written(tmp_path: Path) -> None:
    cli = run_cli(["--config", SR_CONFIG, "--trainer.max_steps=2"], tmp_path)
    with torch.no_grad():
        cli.model.model.phi[0] = float("inf")
    with pytest.raises(
        NonFiniteParametersError, match=r"refusing to write a checkpoint at step 2: state_dict.model.phi"
    ):
        cli.trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()
