"""MTL: one optimizer step on the sum of the m sampled tasks' losses, checked by hand and row by row on
the synthetic landscape against the analytic gradient and the schedule's task draws."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.schedule import IIDSchedule, TaskSampler
from lightning_modules.algorithms.mtl import MTL
from tests.helpers import OPTIMA, SYNTHETIC, LinearStepModule, grad_landscape, log_dir, read_trajectory, run_cli


def test_step_on_the_sum_of_task_losses_by_hand() -> None:
    module = LinearStepModule([0.0, 0.0], ["a", "b", "c"])
    algorithm = MTL(tasks_per_step=2)
    assert algorithm.schedule() == IIDSchedule(tasks_per_step=2, q=0.2)

    loss = algorithm.training_step(module, [("a", torch.tensor([1.0, 2.0])), ("c", torch.tensor([0.5, -1.0]))])
    assert module.theta.tolist() == [1.5, 1.0]  # one SGD step (lr 1) on -(c_a + c_c)·θ
    assert module.events == [("step", ["a", "c"], [1.5, 1.0])]
    assert loss.item() == 0.0  # the summed loss at θ = 0, before the step


def test_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="tasks_per_step must be >= 1"):
        MTL(tasks_per_step=0)
    with pytest.raises(ValueError, match="q must be >= 0"):
        MTL(q=-0.5)


@pytest.mark.parametrize("m", [2])  # m = 3 (every task, the "all" rows) is the configs' own setting
def test_synthetic_run_steps_on_the_summed_gradient(tmp_path: Path, m: int) -> None:
    lr, steps = 0.05, 12
    args = ["--config", str(SYNTHETIC / "mtl.yaml"), f"--model.algorithm.tasks_per_step={m}"]
    cli = run_cli([*args, f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0"], tmp_path)
    rows = read_trajectory(log_dir(cli) / "trajectory.csv")
    assert rows[0] == {"step": "0", "phase": "step", "task": "", "x": "20.0", "y": "5.0"}
    assert len(rows) == 1 + steps
    replay = TaskSampler(IIDSchedule(tasks_per_step=m, q=0.2), list(OPTIMA), [100] * 3, seed=1234)
    prev = (20.0, 5.0)
    for i, row in enumerate(rows[1:], start=1):
        tasks = replay.next_tasks()
        assert row["step"] == str(i) and row["phase"] == "step"
        assert row["task"] == ("all" if m == 3 else "+".join(tasks))
        grads = [grad_landscape(t, *prev) for t in tasks]
        expected = (prev[0] - lr * sum(g[0] for g in grads), prev[1] - lr * sum(g[1] for g in grads))
        point = (float(row["x"]), float(row["y"]))
        assert point == pytest.approx(expected, rel=1e-5, abs=1e-5)
        prev = point
