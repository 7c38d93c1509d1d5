"""Exact resume: a run stopped at step s and resumed from `<logdir>/checkpoints/last.ckpt` with the same config
ends bitwise identical to an uninterrupted run: parameters, optimizer state, algorithm state (φ, inner step),
loader/schedule position, the training RNG and every trajectory.csv row.

The tiny model has dropout (RNG matters), AdamW (optimizer state matters) and 2-3 tasks of random data
(loader and schedule positions matter). Checkpoints every 3 steps and 6 steps per epoch, so s = 6 is an
epoch boundary where a step-triggered save precedes validation, and s = 7 (K = 5) is mid inner loop and
between two step-triggered saves."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import assert_same_run, load_checkpoint, log_dir, run_cli, tiny_config

TOTAL = 12
SEQUENTIAL_REPTILE = {
    "class_path": "lightning_modules.algorithms.SequentialReptile",
    "init_args": {"inner_steps": 5, "outer_lr": 0.5, "q": 0.5},
}
REPTILE = {"class_path": "lightning_modules.algorithms.Reptile", "init_args": {"inner_steps": 2, "outer_lr": 0.5}}
MTL = {"class_path": "lightning_modules.algorithms.MTL", "init_args": {"tasks_per_step": 2, "q": 0.5}}
PCGRAD = {"class_path": "lightning_modules.algorithms.pcgrad.PCGrad", "init_args": {"tasks_per_step": 2, "q": 0.5}}
THREE_TASKS = {"a": 24, "b": 40, "c": 16}


def run(config: Path, root: Path, max_steps: int, ckpt: Path | None = None) -> Path:
    args = ["--config", str(config), f"--trainer.max_steps={max_steps}"]
    if ckpt is not None:
        args += ["--ckpt_path", str(ckpt)]
    return log_dir(run_cli(args, root))


def check_resume(tmp_path: Path, algorithm: dict[str, Any], stop: int, tasks: dict[str, int] | None = None) -> None:
    config = tiny_config(tmp_path / "cfg" / "run.yaml", algorithm, tasks=tasks, every_n_train_steps=3)
    straight = run(config, tmp_path / "straight", TOTAL)

    stopped = run(config, tmp_path / "stopped", stop)
    last = stopped / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == stop  # last.ckpt is the step the run stopped at
    resumed = run(config, tmp_path / "stopped", TOTAL, ckpt=last)
    assert resumed == stopped  # the TensorBoard logger keeps the version directory
    assert sorted(p.name for p in stopped.parent.iterdir()) == [stopped.name]

    assert_same_run(straight, stopped, TOTAL)


@pytest.mark.parametrize("stop", [7, 6], ids=["mid-inner-loop", "epoch-boundary"])
def test_sequential_reptile_resumes_exactly(tmp_path: Path, stop: int) -> None:
    check_resume(tmp_path, SEQUENTIAL_REPTILE, stop)


@pytest.mark.slow
def test_reptile_resumes_exactly(tmp_path: Path) -> None:
    # an outer update every 3 tasks × K = 2 steps; step 9 is inside the 2nd task's block of the 2nd update,
    # so the saved state holds one task end point and k = 1
    check_resume(tmp_path, REPTILE, 9, tasks=THREE_TASKS)


@pytest.mark.slow
def test_mtl_resumes_exactly(tmp_path: Path) -> None:
    check_resume(tmp_path, MTL, 7, tasks=THREE_TASKS)


@pytest.mark.slow
def test_pcgrad_resumes_exactly(tmp_path: Path) -> None:
    try:
        importlib.import_module("lightning_modules.algorithms.pcgrad")
    except ImportError as error:
        pytest.skip(f"lightning_modules.algorithms.pcgrad.PCGrad is not importable yet: {error}")
    check_resume(tmp_path, PCGRAD, 7, tasks=THREE_TASKS)
