"""Sequential Reptile is Algorithm 1 exactly: hand-worked outer steps, an independent plain-PyTorch
recomputation of whole runs (SGD and AdamW), and a short `train.py` run checked row by row against
the analytic gradient of the synthetic landscape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from datamodules.schedule import IIDSchedule, TaskSampler, task_probabilities
from lightning_modules.algorithms.sequential_reptile import SequentialReptile
from tests.helpers import (
    OPTIMA,
    REPO,
    SYNTHETIC,
    LinearStepModule,
    add_callback,
    grad_landscape,
    log_dir,
    make_examples,
    read_trajectory,
    recorder,
    run_cli,
    step,
    tiny_config,
)


def test_outer_step_by_hand() -> None:
    module = LinearStepModule([0.0, 0.0], ["a", "b"])
    algorithm = SequentialReptile(inner_steps=2, outer_lr=0.5)
    algorithm.setup(module)
    step(algorithm, module, "a", [0.25, 0.5])
    step(algorithm, module, "b", [0.75, 1.5])  # θ_2 = (1, 2) from φ = (0, 0)
    assert [e[0] for e in module.events] == ["inner", "inner", "outer"]
    assert module.events[1][2] == [1.0, 2.0]
    assert algorithm.phi[0].tolist() == [0.5, 1.0]  # φ + η(θ_K − φ) = (0,0) + 0.5·(1,2)
    assert module.theta.tolist() == [0.5, 1.0]  # the next trajectory starts from the new φ
    step(algorithm, module, "b", [1.0, 1.0])
    with algorithm.evaluation_weights(module):  # mid-trajectory, evaluation sees φ ...
        assert module.theta.tolist() == [0.5, 1.0]
    assert module.theta.tolist() == [1.5, 2.0]  # ... and training goes on from θ
    step(algorithm, module, "a", [0.0, 0.0])
    assert algorithm.phi[0].tolist() == [1.0, 1.5]  # (0.5, 1) + 0.5·((1.5, 2) − (0.5, 1))
    assert algorithm.outer_updates == 2 and algorithm.k == 0


def test_annealed_outer_lr_by_hand() -> None:
    module = LinearStepModule([0.0], ["a"], max_steps=4)
    algorithm = SequentialReptile(inner_steps=1, outer_lr=0.5, outer_lr_final=0.1)
    algorithm.setup(module)  # 4 outer updates; η = 0.5, 0.4, 0.3, 0.2
    phis = []
    for _ in range(4):
        step(algorithm, module, "a", [1.0])
        phis.append(algorithm.phi[0].item())
    expected, phi = [], 0.0
    for eta in (0.5, 0.4, 0.3, 0.2):
        phi = phi + eta * 1.0
        expected.append(phi)
    assert phis == pytest.approx(expected)


def test_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match=r"inner_steps \(K\) must be >= 1"):
        SequentialReptile(inner_steps=0)
    for eta in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"outer_lr \(η\) must be in \(0, 1\]"):
            SequentialReptile(outer_lr=eta)
    with pytest.raises(ValueError, match="q must be >= 0"):
        SequentialReptile(q=-1)


# ----------------------------------------------------------------------------- plain PyTorch recomputation
def plain_forward(params: dict[str, torch.Tensor], task: str, x: torch.Tensor) -> torch.Tensor:
    hidden = torch.tanh(x @ params["trunk.weight"].T + params["trunk.bias"])
    return (hidden @ params[f"heads.{task}.weight"].T + params[f"heads.{task}.bias"]).squeeze(-1)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
        {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.05, "weight_decay": 0.1}},
    ],
    ids=["sgd", "adamw"],
)
def test_matches_plain_pytorch(tmp_path: Path, optimizer: dict[str, Any]) -> None:
    k, eta, q, sizes = 3, 0.5, 0.5, {"a": 24, "b": 40}
    algorithm = {
        "class_path": "lightning_modules.algorithms.SequentialReptile",
        "init_args": {"inner_steps": k, "outer_lr": eta, "q": q},
    }
    config = tiny_config(
        tmp_path / "cfg" / "sr.yaml", algorithm, tasks=sizes, dropout=0.0, optimizer=optimizer, trajectory=False
    )
    cli = run_cli(
        ["--config", str(config), "--trainer.max_steps=9", add_callback("tests.helpers.StepRecorder")], tmp_path
    )
    rec = recorder(cli)

    # The task order is the schedule's: replay TaskSampler with the data seed (11 in tiny_config).
    tasks = [batch[0][0] for batch in rec.batches]
    replay = TaskSampler(IIDSchedule(tasks_per_step=1, q=q), list(sizes), list(sizes.values()), seed=11)
    assert len(tasks) == 9 and tasks == [replay.next_tasks()[0] for _ in range(9)]
    assert all(len(batch) == 1 and len(batch[0][1]) == 4 for batch in rec.batches)

    data = {name: make_examples(name, n, in_dim=4, seed=0) for name, n in sizes.items()}
    params = {name: p.clone().requires_grad_(True) for name, p in rec.initial.items()}
    opt_class = getattr(torch.optim, optimizer["class_path"].rsplit(".", 1)[1])
    opt = opt_class(params.values(), **optimizer["init_args"])
    phi = {name: p.detach().clone() for name, p in params.items()}
    outer: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    for i, ((task, indices),) in enumerate(rec.batches, start=1):
        x = torch.stack([data[task][j]["x"] for j in indices])
        y = torch.stack([data[task][j]["y"] for j in indices])
        opt.zero_grad(set_to_none=True)
        ((plain_forward(params, task, x) - y) ** 2).mean().backward()
        opt.step()  # θ^(k) = θ^(k-1) − α ∇L_{t_k}(θ^(k-1)); Adam's moments carry over
        if i % k == 0:
            with torch.no_grad():
                for name, p in params.items():
                    phi[name] = phi[name] + eta * (p - phi[name])  # φ ← φ + η(θ^(K) − φ)
                    p.copy_(phi[name])  # θ^(0) ← φ
            outer.append(({n: p.detach().clone() for n, p in params.items()}, dict(phi)))

    assert [u["step"] for u in rec.updates] == [3, 6, 9]
    names = list(rec.initial)
    for update, (plain_params, plain_phi) in zip(rec.updates, outer, strict=True):
        for j, name in enumerate(names):
            torch.testing.assert_close(update["params"][name], plain_params[name], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(update["phi"][j], plain_phi[name], rtol=1e-5, atol=1e-6)
    assert not torch.equal(rec.updates[-1]["params"]["trunk.weight"], rec.initial["trunk.weight"])


# ------------------------------------------------------------ a short run through the command line
SHORT_RUN = [
    "--config",
    str(SYNTHETIC / "sequential_reptile.yaml"),
    "--model.algorithm.inner_steps",
    "5",
    "--model.algorithm.outer_lr",
    "0.5",
    "--optimizer",
    "torch.optim.SGD",
    "--optimizer.lr",
    "0.05",
    "--trainer.max_steps",
    "40",
]


def check_algorithm_1(rows: list[dict[str, str]], k: int = 5, eta: float = 0.5, lr: float = 0.05) -> None:
    def point(row: dict[str, str]) -> tuple[float, float]:
        return float(row["x"]), float(row["y"])

    assert rows[0] == {"step": "0", "phase": "outer", "task": "", "x": "20.0", "y": "5.0"}
    assert len(rows) == 1 + 40 + 40 // k
    replay = TaskSampler(IIDSchedule(tasks_per_step=1, q=0.2), list(OPTIMA), [100, 100, 100], seed=1234)
    assert task_probabilities([100, 100, 100], 0.2).tolist() == pytest.approx([1 / 3] * 3)  # uniform here
    phi, prev, i = point(rows[0]), point(rows[0]), 1
    for outer in range(1, 40 // k + 1):
        for inner in range(1, k + 1):
            row = rows[i]
            i += 1
            step = (outer - 1) * k + inner
            assert (row["step"], row["phase"]) == (str(step), "inner")
            assert row["task"] == replay.next_tasks()[0]  # t_k ~ Cat(p), in the schedule's seeded order
            gx, gy = grad_landscape(row["task"], *prev)  # θ^(0) = φ: the first `prev` is the outer row
            assert point(row) == pytest.approx((prev[0] - lr * gx, prev[1] - lr * gy), rel=1e-5, abs=1e-5)
            prev = point(row)
        row = rows[i]
        i += 1
        assert (row["step"], row["phase"], row["task"]) == (str(outer * k), "outer", "")
        expected = (phi[0] + eta * (prev[0] - phi[0]), phi[1] + eta * (prev[1] - phi[1]))
        assert point(row) == pytest.approx(expected, rel=1e-6, abs=1e-5)
        phi = prev = point(row)  # the next trajectory starts from φ_new


def test_short_run_trajectory_follows_algorithm_1(tmp_path: Path) -> None:
    cli = run_cli([*SHORT_RUN, "--trainer.limit_val_batches=0"], tmp_path)
    check_algorithm_1(read_trajectory(log_dir(cli) / "trajectory.csv"))


@pytest.mark.slow
def test_short_run_through_train_py(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "train.py"), "fit", *SHORT_RUN], cwd=tmp_path, check=True)
    rows = read_trajectory(tmp_path / "logs" / "synthetic" / "sequential_reptile" / "version_0" / "trajectory.csv")
    check_algorithm_1(rows)
