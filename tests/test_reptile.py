"""Reptile (the multi-task baseline): the outer step on hand-worked numbers (mean over task end points, each
trajectory from φ), and a synthetic run checked row by row against the analytic landscape gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.schedule import BlockSchedule, TaskSampler
from lightning_modules.algorithms.reptile import Reptile
from tests.helpers import OPTIMA, SYNTHETIC, LinearStepModule, grad_landscape, log_dir, read_trajectory, run_cli, step


def test_outer_step_is_the_mean_over_tasks_by_hand() -> None:
    module = LinearStepModule([0.0, 0.0], ["a", "b"])
    algorithm = Reptile(inner_steps=1, outer_lr=0.5)
    algorithm.setup(module)
    assert algorithm.steps_per_outer_update() == 2
    step(algorithm, module, "a", [1.0, 2.0])  # θ_a = (1, 2)
    assert algorithm.phi[0].tolist() == [0.0, 0.0] and module.theta.tolist() == [1.0, 2.0]
    step(algorithm, module, "b", [3.0, -2.0])  # θ_b starts again from φ = (0, 0): (3, -2), not (4, 0)
    assert module.events[1] == ("inner", ["b"], [3.0, -2.0])
    # φ ← φ − η · mean_t(φ − θ_t) = (0, 0) + 0.5 · ((1, 2) + (3, -2)) / 2 = (1, 0)
    assert algorithm.phi[0].tolist() == [1.0, 0.0]
    assert module.theta.tolist() == [1.0, 0.0]
    assert [e[0] for e in module.events] == ["inner", "inner", "outer"]


def test_two_steps_per_task_by_hand() -> None:
    module = LinearStepModule([1.0], ["a", "b"])
    algorithm = Reptile(inner_steps=2, outer_lr=0.25)
    algorithm.setup(module)
    for task, c in [("a", 1.0), ("a", 1.0), ("b", -4.0), ("b", 0.0)]:
        step(algorithm, module, task, [c])
    # θ_a = 1 + 2 = 3, θ_b = 1 − 4 = −3, mean 0; φ = 1 + 0.25 · (0 − 1) = 0.75
    assert [e[2] for e in module.events if e[0] == "inner"] == [[2.0], [3.0], [-3.0], [-3.0]]
    assert algorithm.phi[0].tolist() == [0.75]
    state = algorithm.state_dict()
    step(algorithm, module, "b", [1.0])  # mid-trajectory state round trip
    copy = Reptile(inner_steps=2, outer_lr=0.25)
    copy.load_state_dict(state)
    assert copy.phi[0].tolist() == [0.75] and copy.k == 0 and copy.outer_updates == 1


def test_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match=r"inner_steps \(K\) must be >= 1"):
        Reptile(inner_steps=0)
    with pytest.raises(ValueError, match=r"outer_lr \(η\) must be in \(0, 1\]"):
        Reptile(outer_lr=1.01)
    with pytest.raises(ValueError, match=r"outer_lr_final \(η\) must be in \(0, 1\]"):
        Reptile(outer_lr_final=0.0)


def test_synthetic_run_follows_eq_2_3(tmp_path: Path) -> None:
    k, eta, lr, rounds = 3, 0.5, 0.05, 2
    cli = run_cli(
        [
            "--config",
            str(SYNTHETIC / "reptile.yaml"),
            f"--model.algorithm.inner_steps={k}",
            f"--model.algorithm.outer_lr={eta}",
            f"--trainer.max_steps={rounds * 3 * k}",
            "--trainer.limit_val_batches=0",
        ],
        tmp_path,
    )
    rows = read_trajectory(log_dir(cli) / "trajectory.csv")
    assert rows[0]["phase"] == "outer" and len(rows) == 1 + rounds * 3 * k + rounds
    replay = TaskSampler(BlockSchedule(steps_per_task=k), list(OPTIMA), [100] * 3, seed=1234)
    phi = torch.tensor([float(rows[0]["x"]), float(rows[0]["y"])], dtype=torch.float64)
    i = 1
    for r in range(rounds):
        ends, seen = [], []
        for _ in range(3):
            prev = phi  # every task's trajectory starts from φ
            for j in range(k):
                row = rows[i]
                i += 1
                task = replay.next_tasks()[0]
                assert (row["phase"], row["task"]) == ("inner", task)
                assert row["step"] == str(r * 3 * k + len(seen) * k + j + 1)
                expected = prev - lr * torch.tensor(grad_landscape(task, *prev.tolist()), dtype=torch.float64)
                point = torch.tensor([float(row["x"]), float(row["y"])], dtype=torch.float64)
                torch.testing.assert_close(point, expected, rtol=1e-5, atol=1e-5)
                prev = point
            seen.append(task)
            ends.append(prev)
        assert sorted(seen) == sorted(OPTIMA)  # each task once per outer update
        row = rows[i]
        i += 1
        assert (row["step"], row["phase"], row["task"]) == (str((r + 1) * 3 * k), "outer", "")
        expected = phi + eta * (torch.stack(ends).mean(0) - phi)
        phi = torch.tensor([float(row["x"]), float(row["y"])], dtype=torch.float64)
        torch.testing.assert_close(phi, expected, rtol=1e-6, atol=1e-5)
