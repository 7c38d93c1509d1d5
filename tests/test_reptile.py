"""Reptile (the multi-task baseline): the outer step on hand-worked numbers (mean over task end points, each
trajectory from φ), the inner Adam's first moment kept within one task's trajectory (β1 = 0, as
supervised-reptile), and a synthetic run checked row by row against the analytic landscape gradient."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from datamodules.schedule import BlockSchedule, TaskSampler
from lightning_modules.algorithms.reptile import Reptile
from tests.helpers import (
    OPTIMA,
    SYNTHETIC,
    LinearStepModule,
    grad_landscape,
    load_checkpoint,
    log_dir,
    read_trajectory,
    run_cli,
    step,
)


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


def adamw_module(fused: bool) -> LinearStepModule:
    """θ = 0, AdamW lr 0.1 with the config's β1 0.9 (Reptile overrides it), β2 0.5, no eps or weight decay."""
    module = LinearStepModule([0.0], ["a", "b"])
    module.optimizer = torch.optim.AdamW([module.theta], lr=0.1, betas=(0.9, 0.5), eps=0.0, weight_decay=0.0,
                                         fused=fused)  # fmt: skip
    return module


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_no_first_moment_crosses_a_trajectory_boundary(fused: bool) -> None:
    """Task a's gradient is −1 (loss −θ), task b's +2; K = 2. With β1 = 0, b's first step moves θ by
    −lr · 2 / √v̂: its first moment is b's gradient alone, while the second moment and Adam's step count carry
    over from a's trajectory, as in supervised-reptile."""
    module = adamw_module(fused)
    algorithm = Reptile(inner_steps=2, outer_lr=0.5)  # inner_beta1 = 0 by default
    algorithm.setup(module)
    step(algorithm, module, "a", [1.0])  # t=1: m = −1, v = 0.5, v̂ = 0.5/(1−0.5) = 1, θ = 0 + 0.1
    step(algorithm, module, "a", [1.0])  # t=2: m = −1, v = 0.75, v̂ = 0.75/0.75 = 1, θ_a = 0.2
    assert module.optimizer.param_groups[0]["betas"] == (0.0, 0.5)
    assert module.theta.item() == pytest.approx(0.2, abs=1e-7)
    step(algorithm, module, "b", [-2.0])  # t=3, from φ = 0: m = 2, v = 0.375 + 2 = 2.375, v̂ = 2.375/0.875
    state = module.optimizer.state[module.theta]
    assert state["exp_avg"].tolist() == [2.0]  # b's gradient exactly: nothing of a's −1
    assert float(state["step"]) == 3.0  # the step count (bias correction) carries over
    theta_b1 = -0.1 * 2 / math.sqrt(2.375 / 0.875)
    assert module.theta.item() == pytest.approx(theta_b1, abs=1e-6)
    step(algorithm, module, "b", [-2.0])  # t=4: v = 1.1875 + 2 = 3.1875, v̂ = 3.1875/0.9375 = 3.4
    theta_b = theta_b1 - 0.1 * 2 / math.sqrt(3.4)
    # φ ← φ + η (mean(θ_a, θ_b) − φ), φ = 0
    assert algorithm.phi[0].item() == pytest.approx(0.5 * (0.2 + theta_b) / 2, abs=1e-6)


def test_inner_beta1_none_keeps_the_optimizers_first_moment() -> None:
    """The contrast: with the optimizer's β1 = 0.9, b's first step starts from a's momentum (0.9 · (−0.19))."""
    module = adamw_module(fused=False)
    algorithm = Reptile(inner_steps=2, outer_lr=0.5, inner_beta1=None)
    algorithm.setup(module)
    for task, c in [("a", 1.0), ("a", 1.0), ("b", -2.0)]:
        step(algorithm, module, task, [c])
    assert module.optimizer.param_groups[0]["betas"] == (0.9, 0.5)
    m_a = 0.9 * -0.1 + 0.1 * -1.0  # a's first moment after its 2 steps: −0.19
    assert module.optimizer.state[module.theta]["exp_avg"].item() == pytest.approx(0.9 * m_a + 0.1 * 2.0)


def test_inner_beta1_refuses_sgd_momentum_and_bad_values() -> None:
    module = LinearStepModule([0.0], ["a", "b"])
    step(Reptile(inner_steps=1), module, "a", [1.0])  # plain SGD: no first moment, nothing to set
    module.optimizer = torch.optim.SGD([module.theta], lr=1.0, momentum=0.9)
    with pytest.raises(ValueError, match="momentum 0.9"):
        step(Reptile(inner_steps=1), module, "a", [1.0])
    step(Reptile(inner_steps=1, inner_beta1=None), module, "a", [1.0])
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"inner_beta1 must be in \[0, 1\)"):
            Reptile(inner_beta1=bad)


def test_cli_run_trains_with_beta1_zero(tmp_path: Path) -> None:
    """Through train.py the live AdamW groups get β1 = 0 (the saved optimizer state shows it), and the run's
    config.yaml records inner_beta1."""
    args = ["--config", str(SYNTHETIC / "reptile.yaml"), "--optimizer=torch.optim.AdamW", "--optimizer.lr=0.05"]
    cli = run_cli([*args, "--model.algorithm.inner_steps=2", "--trainer.max_steps=8", "--trainer.limit_val_batches=0"],
                  tmp_path)  # fmt: skip
    groups = load_checkpoint(log_dir(cli) / "checkpoints" / "last.ckpt")["optimizer_states"][0]["param_groups"]
    assert [tuple(g["betas"]) for g in groups] == [(0.0, 0.999)]
    config = yaml.safe_load((log_dir(cli) / "config.yaml").read_text())
    assert config["model"]["algorithm"]["init_args"]["inner_beta1"] == 0.0
    assert config["optimizer"]["init_args"]["betas"] == [0.9, 0.999]  # the section as given; Reptile overrides β1


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
