"""DDP on two CPU processes (gloo) through train.py: every rank trains on the same task at every step, on its
own disjoint shard of that task's data, and all ranks hold identical φ and parameters after every outer
update (which needs the gradients averaged over ranks, since the shards differ)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import QUIET, REPO, add_callback, read_trajectory, tiny_config

K, STEPS = 3, 9


@pytest.mark.slow
def test_sequential_reptile_on_two_cpu_processes(tmp_path: Path) -> None:
    algorithm = {
        "class_path": "lightning_modules.algorithms.SequentialReptile",
        "init_args": {"inner_steps": K, "outer_lr": 0.5, "q": 0.5},
    }
    config = tiny_config(tmp_path / "cfg" / "ddp.yaml", algorithm, tasks={"a": 24, "b": 40}, max_steps=STEPS)
    records = tmp_path / "records"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "fit",
        "--config",
        str(config),
        # the heads of the task not in this step's batch get no gradient
        "--trainer.strategy=ddp_find_unused_parameters_true",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        f"--trainer.default_root_dir={tmp_path / 'logs'}",
        add_callback("tests.helpers.StepRecorder", out_dir=str(records)),
        *QUIET,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    ranks = [torch.load(records / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    zero, one = ranks
    assert len(zero["batches"]) == len(one["batches"]) == STEPS
    for step, (b0, b1) in enumerate(zip(zero["batches"], one["batches"]), start=1):
        (task0, idx0), (task1, idx1) = b0[0], b1[0]
        assert task0 == task1, f"step {step}: rank 0 trained on {task0}, rank 1 on {task1}"
        assert len(idx0) == len(idx1) == 4
        assert not set(idx0) & set(idx1), f"step {step}: shards overlap on {set(idx0) & set(idx1)}"
    assert len({t for b in zero["batches"] for t, _ in b}) == 2  # both tasks were drawn

    for name, tensor in zero["initial"].items():
        assert torch.equal(tensor, one["initial"][name]), f"initial {name} differs between ranks"
    assert [u["step"] for u in zero["updates"]] == [u["step"] for u in one["updates"]] == [3, 6, 9]
    for u0, u1 in zip(zero["updates"], one["updates"]):
        for p0, p1 in zip(u0["phi"], u1["phi"], strict=True):
            assert torch.equal(p0, p1), f"φ differs between ranks after the outer update at step {u0['step']}"
        for name, tensor in u0["params"].items():
            assert torch.equal(tensor, u1["params"][name]), f"{name} differs at step {u0['step']}"
    first, last = zero["initial"]["trunk.weight"], zero["updates"][-1]["params"]["trunk.weight"]
    assert not torch.equal(first, last)

    (trajectory,) = (tmp_path / "logs").rglob("trajectory.csv")  # written once, by rank 0
    rows = read_trajectory(trajectory)
    assert len(rows) == 1 + STEPS + STEPS // K
    assert [r["task"] for r in rows if r["phase"] == "inner"] == [b[0][0] for b in zero["batches"]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm",
    [
        {"class_path": "lightning_modules.algorithms.pcgrad.PCGrad", "init_args": {"tasks_per_step": 2}},
        {
            "class_path": "lightning_modules.algorithms.gradnorm.GradNorm",
            "init_args": {"tasks_per_step": 2, "gradient_on": "all_shared"},
        },
    ],
    ids=["pcgrad", "gradnorm"],
)
def test_per_task_gradient_methods_on_two_cpu_processes_keep_ranks_identical(
    tmp_path: Path, algorithm: dict[str, Any]
) -> None:
    """PCGrad's task gradients and GradNorm's weighted sum with its per-task columns (autograd.grad, outside DDP's
    reducer) and the heads' gradients are averaged over ranks in one flat buffer: every rank applies the same
    update although each sees its own shard."""
    steps = 4
    config = tiny_config(tmp_path / "cfg" / "ddp.yaml", algorithm, tasks={"a": 24, "b": 40}, max_steps=steps)
    records = tmp_path / "records"
    command = [
        sys.executable, str(REPO / "train.py"), "fit", "--config", str(config),
        "--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.accelerator=cpu", "--trainer.devices=2",
        f"--trainer.default_root_dir={tmp_path / 'logs'}",
        add_callback("tests.helpers.StepRecorder", out_dir=str(records)), *QUIET,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    zero, one = (torch.load(records / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert [u["step"] for u in zero["updates"]] == [u["step"] for u in one["updates"]] == list(range(1, steps + 1))
    for u0, u1 in zip(zero["updates"], one["updates"]):
        for name, tensor in u0["params"].items():
            assert torch.equal(tensor, u1["params"][name]), f"{name} differs between ranks at step {u0['step']}"
    for name in ("heads.a.weight", "heads.b.weight", "trunk.weight"):
        assert not torch.equal(zero["initial"][name], zero["updates"][-1]["params"][name]), name
