"""The torchjd adapter (Sum = MTL, Mean = MTL / m on the shared parameters, UPGrad on a worked 2-D case,
stateful aggregators saved and restored), and every gradient-surgery config fitted through the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from torch import nn
from torchjd import Stateful
from torchjd.aggregation import GradVac as TorchJDGradVac
from torchjd.aggregation import Mean, Sum, UPGrad

from lightning_modules.algorithms.aggregator import Aggregator
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.models.synthetic import SyntheticLandscape
from tests.helpers import SYNTHETIC, log_dir, read_trajectory, run_cli
from tests.trainer_fixtures import SharedWithHeads, fit_synthetic


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_sum_aggregator_is_mtl(tmp_path) -> None:
    tasks = ["a", "b", "c"]
    with_sum, mtl = SharedWithHeads(tasks, width=3), SharedWithHeads(tasks, width=3)
    fit_synthetic(with_sum, Aggregator(Sum(), tasks_per_step=2), tasks, steps=3, lr=0.1, tmp_path=tmp_path)
    fit_synthetic(mtl, MTL(tasks_per_step=2), tasks, steps=3, lr=0.1, tmp_path=tmp_path)
    assert not torch.equal(flat(with_sum), flat(SharedWithHeads(tasks, width=3)))
    torch.testing.assert_close(flat(with_sum), flat(mtl))


def test_mean_aggregator_is_mtl_with_the_shared_step_divided_by_m(tmp_path) -> None:
    # The landscape has only shared parameters: Mean with lr is MTL with lr / m.
    optima = {"a": [0.0, 10.0], "b": [0.0, 0.0], "c": [10.0, 0.0]}
    mean, mtl = SyntheticLandscape(optima=optima, init=[3.0, 4.0]), SyntheticLandscape(optima=optima, init=[3.0, 4.0])
    fit_synthetic(mean, Aggregator(Mean(), tasks_per_step=3), list(optima), steps=2, lr=0.3, tmp_path=tmp_path)
    fit_synthetic(mtl, MTL(tasks_per_step=3), list(optima), steps=2, lr=0.1, tmp_path=tmp_path)
    torch.testing.assert_close(mean.phi.detach(), mtl.phi.detach())


def test_upgrad_worked_2d_case() -> None:
    # g1 = (1,0), g2 = (-1,1). UPGrad projects each g_i onto the dual cone {x: g1·x >= 0, g2·x >= 0} and
    # averages: g1 violates g2·x >= 0 -> g1 - (g1·g2/||g2||²) g2 = (1/2, 1/2) (now g1·x = 1/2 >= 0);
    # g2 violates g1·x >= 0 -> g2 - (g2·g1/||g1||²) g1 = (0, 1). Mean: (1/4, 3/4).
    # (torchjd regularises the Gramian by 1e-4, hence the tolerance.)
    direction = Aggregator(UPGrad(), tasks_per_step=2).aggregate(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), ["a", "b"])
    torch.testing.assert_close(direction, torch.tensor([0.25, 0.75]), atol=1e-3, rtol=0)


def test_rows_are_given_in_task_name_order() -> None:
    seen = []

    class Spy(Sum):
        def forward(self, matrix):
            seen.append(matrix.clone())
            return super().forward(matrix)

    jacobian = torch.tensor([[3.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    Aggregator(Spy(), tasks_per_step=3).aggregate(jacobian, ["c", "a", "b"])
    torch.testing.assert_close(seen[0], torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))


def test_stateful_aggregator_state_round_trips_through_a_weights_only_checkpoint() -> None:
    gen = torch.Generator().manual_seed(5)
    steps = [torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(4)]
    tasks = ["a", "b", "c"]
    original = Aggregator(TorchJDGradVac(beta=0.4), tasks_per_step=3)
    assert original.stateful and original.state_dict() == {}  # nothing to save before the first step
    torch.manual_seed(0)
    for jacobian in steps[:2]:
        original.aggregate(jacobian, tasks)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert not any(
        "beta" in key for entries in saved["aggregator"].values() for key in entries
    )  # hyperparameters stay config
    rng = torch.get_rng_state()
    expected = [original.aggregate(j, tasks) for j in steps[2:]]

    resumed = Aggregator(TorchJDGradVac(beta=0.4), tasks_per_step=3)
    resumed.load_state_dict(saved)
    torch.set_rng_state(rng)
    for jacobian, want in zip(steps[2:], expected):
        assert torch.equal(resumed.aggregate(jacobian, tasks), want)
    fresh = Aggregator(TorchJDGradVac(beta=0.4), tasks_per_step=3)
    torch.set_rng_state(rng)
    assert not torch.equal(fresh.aggregate(steps[2], tasks), expected[0])  # the state did matter


def test_state_that_cannot_be_saved_fails_clearly_on_resume() -> None:
    class Opaque(Sum):
        def forward(self, matrix):
            self.solver = object()  # like a cvxpy problem built on the first call
            return super().forward(matrix)

    class OpaqueStateful(Opaque, Stateful):
        def reset(self) -> None:
            pass

    algorithm = Aggregator(OpaqueStateful(), tasks_per_step=2)
    algorithm.aggregate(torch.ones(2, 2), ["a", "b"])
    state = algorithm.state_dict()
    with pytest.raises(ValueError, match="cannot resume OpaqueStateful exactly"):
        Aggregator(OpaqueStateful(), tasks_per_step=2).load_state_dict(state)


def test_stateful_aggregator_needs_every_task_every_step(tmp_path) -> None:
    optima = {"a": [0.0, 10.0], "b": [0.0, 0.0], "c": [10.0, 0.0]}
    with pytest.raises(ValueError, match="set tasks_per_step to the number of training tasks"):
        fit_synthetic(
            SyntheticLandscape(optima=optima),
            Aggregator(TorchJDGradVac(), tasks_per_step=2),
            list(optima),
            1,
            0.1,
            tmp_path,
        )


def test_validation() -> None:
    with pytest.raises(TypeError, match="torchjd.aggregation.Aggregator"):
        Aggregator(lambda g: g.sum(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tasks_per_step must be >= 1"):
        Aggregator(Sum(), tasks_per_step=0)
    with pytest.raises(ValueError, match="q must be >= 0"):
        Aggregator(Sum(), q=-0.5)
    assert Aggregator(Sum()).schedule().tasks_per_step == 8 and not Aggregator(Sum()).stateful


# ---------------------------------------------------------------------------- the full CLI (slow)
def fit_config(config: str, root: Path, *extra: str) -> tuple[list[dict[str, str]], Path]:
    """`train.py fit --config configs/synthetic/<config>.yaml *extra` in-process; (trajectory rows, log dir)."""
    cli = run_cli(["--config", str(SYNTHETIC / f"{config}.yaml"), *extra], root)
    return read_trajectory(log_dir(cli) / "trajectory.csv"), log_dir(cli)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["pcgrad", "gradvac", "cagrad"])
def test_config_fits_under_the_cli(config: str, tmp_path) -> None:
    rows, _ = fit_config(config, tmp_path, "--trainer.max_steps=5")
    assert [r["step"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [r["phase"] for r in rows] == ["step"] * 6
    assert [r["task"] for r in rows] == ["", "all", "all", "all", "all", "all"]  # 3 of 3 tasks each step
    assert (float(rows[0]["x"]), float(rows[0]["y"])) == (20.0, 5.0)
    xs = [float(r["x"]) for r in rows]
    assert all(b < a for a, b in zip(xs, xs[1:])), "every method moves from (20, 5) towards the wells"


@pytest.mark.slow
def test_gradvac_resumes_exactly_under_the_cli(tmp_path) -> None:
    # From inside the triangle of wells the task gradients conflict, so GradVac's targets shape the path.
    args = ["--model.model.init_args.init=[3.0, 3.0]", "--model.algorithm.init_args.beta=0.5"]
    expected, _ = fit_config("gradvac", tmp_path / "straight", *args, "--trainer.max_steps=6")
    _, first = fit_config("gradvac", tmp_path / "split", *args, "--trainer.max_steps=3")
    resumed, second = fit_config(
        "gradvac", tmp_path / "split", *args, "--trainer.max_steps=6", f"--ckpt_path={first}/checkpoints/last.ckpt"
    )
    assert second == first and resumed == expected
    pcgrad, _ = fit_config("pcgrad", tmp_path / "pcgrad", args[0], "--trainer.max_steps=6")
    assert [r["x"] for r in pcgrad] != [r["x"] for r in expected]  # the targets changed the path
