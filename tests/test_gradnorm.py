"""GradNorm: the weight update on a hand-worked case, against an independent double-backward GradNorm,
renormalisation, L_t(0) recorded once, exact state round trip, argument checks, and the synthetic config."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from lightning_modules.algorithms.gradnorm import MIN_WEIGHT, GradNorm
from lightning_modules.models.base import TaskModel, TaskOutput
from tests.helpers import SYNTHETIC, load_checkpoint, log_dir, read_trajectory, run_cli, tiny_config


class FakeModule:
    """A `TrainingModule` (what an Algorithm sees of MultiTaskModule), on one process, with a plain torch
    optimizer."""

    def __init__(self, model: TaskModel, task_names: list[str], optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.task_names = task_names
        self.optimizer = optimizer
        self.trainer = SimpleNamespace(max_steps=-1)
        self.logged: dict[str, float] = {}
        self.emitted: list[tuple[str, list[str]]] = []

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def task_loss(self, task: str, batch: Any) -> torch.Tensor:
        return self.model(task, batch).loss

    def manual_backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer

    def reset_optimizer_state(self) -> None:
        self.optimizer.state.clear()

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def log(self, name: str, value: Any, **kwargs: Any) -> None:
        self.logged[name] = float(value)

    def emit(self, phase: str, tasks: list[str]) -> None:
        self.emitted.append((phase, tasks))


class LinearTasks(TaskModel):
    """L_t = s_t + k_t·a + u_t·b + c_t·h_t: constant gradients, so norms and updates can be worked by hand.

    a (first shared layer) and b (last shared layer) are shared, h_t is task t's head; the offsets s_t are
    buffers the test sets to choose each loss."""

    def __init__(self, k: dict[str, float], u: dict[str, list[float]], c: dict[str, float]) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.0))
        self.b = nn.Parameter(torch.zeros(2))
        self.heads = nn.ParameterDict({t: nn.Parameter(torch.tensor(0.0)) for t in k})
        self.k, self.c = k, c
        self.u = {t: torch.tensor(v) for t, v in u.items()}
        self.offset = {t: 0.0 for t in k}

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [("a", self.a), ("b", self.b)]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [self.b]

    def forward(self, task: str, batch: Any) -> TaskOutput:
        loss = self.offset[task] + self.k[task] * self.a + self.u[task] @ self.b + self.c[task] * self.heads[task]
        return TaskOutput(loss=loss)

    def set_losses(self, losses: dict[str, float]) -> None:
        """Chooses the offsets so the losses at the current parameters are `losses`."""
        for task, value in losses.items():
            self.offset[task] = 0.0
            self.offset[task] = value - float(self(task, None).loss.detach())


def linear_setup(algorithm: GradNorm, lr: float = 1.0) -> tuple[LinearTasks, FakeModule]:
    # ||∇_b L|| = 3 and 10 for t1, t2 (t3 is never sampled); ||∇_(a,b) L|| = 5 and √136
    model = LinearTasks(
        k={"t1": 4.0, "t2": 6.0, "t3": 1.0},
        u={"t1": [3.0, 0.0], "t2": [6.0, 8.0], "t3": [1.0, 1.0]},
        c={"t1": 2.0, "t2": -1.0, "t3": 1.0},
    )
    module = FakeModule(model, ["t1", "t2", "t3"], torch.optim.SGD(model.parameters(), lr=lr))
    algorithm.setup(module)
    return model, module


def fresh_weight_optimizer_state(n: int, lr: float) -> dict[str, Any]:
    return torch.optim.Adam([torch.ones((), requires_grad=True) for _ in range(n)], lr=lr).state_dict()


def test_hand_worked_two_task_step_updates_weights_model_and_heads() -> None:
    algorithm = GradNorm(tasks_per_step=2, alpha=0.5, weight_lr=0.1)
    model, module = linear_setup(algorithm)
    # resume-like state: weights (1.2, 0.6, 1.2), L(0) = 2 for t1 and t2, t3 never seen
    algorithm.load_state_dict(
        {
            "task_names": ["t1", "t2", "t3"],
            "weights": torch.tensor([1.2, 0.6, 1.2]),
            "initial_losses": torch.tensor([2.0, 2.0, float("nan")]),
            "optimizer": fresh_weight_optimizer_state(3, 0.1),
        }
    )
    model.set_losses({"t1": 1.0, "t2": 3.0})

    loss = algorithm.training_step(module, [("t1", None), ("t2", None)])

    # By hand: G = w·||∇_b L|| = (1.2·3, 0.6·10) = (3.6, 6.0), Ḡ = 4.8; L̃ = (1/2, 3/2), r = (0.5, 1.5);
    # target = 4.8·(√0.5, √1.5) = (3.394, 5.879) < G, so ∂L_grad/∂w = (+3, +10).
    # Adam's first step moves each sampled weight by -lr·sign: (1.1, 0.5, 1.2), sum 2.8 -> ×3/2.8.
    expected = torch.tensor([1.1, 0.5, 1.2]) * 3 / 2.8
    assert torch.allclose(algorithm.weights, expected, atol=1e-6)
    assert math.isclose(float(algorithm.weights.sum()), 3.0, rel_tol=1e-6)
    assert loss.item() == pytest.approx(1.2 * 1.0 + 0.6 * 3.0)
    # model step (SGD, lr 1) on Σ w_t L_t with the weights *before* their update:
    assert model.a.item() == pytest.approx(-(1.2 * 4 + 0.6 * 6))
    assert model.b.tolist() == pytest.approx([-(1.2 * 3 + 0.6 * 6), -(0.6 * 8)])
    assert model.heads["t1"].item() == pytest.approx(-1.2 * 2)
    assert model.heads["t2"].item() == pytest.approx(-0.6 * -1)
    assert model.heads["t3"].item() == 0.0
    assert module.logged["gradnorm/weight/t2"] == pytest.approx(0.5 * 3 / 2.8)
    assert module.emitted == [("step", ["t1", "t2"])]


def test_first_step_gradient_opposes_the_larger_gradient_norm() -> None:
    # At the first step L̃ = 1 for every task, so the target is Ḡ: the task with the larger G loses weight.
    algorithm = GradNorm(tasks_per_step=2, weight_lr=0.1)
    model, module = linear_setup(algorithm)
    model.set_losses({"t1": 2.0, "t2": 5.0})
    algorithm.training_step(module, [("t1", None), ("t2", None)])
    # G = (3, 10), Ḡ = 6.5: ∂L_grad/∂w = (-3, +10) -> w = (1.1, 0.9, 1.0), already summing to 3.
    assert torch.allclose(algorithm.weights, torch.tensor([1.1, 0.9, 1.0]), atol=1e-6)
    assert torch.allclose(algorithm.initial_losses[:2], torch.tensor([2.0, 5.0]))
    assert torch.isnan(algorithm.initial_losses[2])


def test_gradient_on_all_shared_uses_the_norm_over_every_shared_parameter() -> None:
    algorithm = GradNorm(tasks_per_step=2, alpha=1.0, gradient_on="all_shared")
    linear_setup(algorithm)
    algorithm.weight_gradient([0, 1], torch.tensor([2.0, 5.0]), torch.tensor([5.0, 136**0.5]))  # records L(0)
    gradient, info = algorithm.weight_gradient([0, 1], torch.tensor([1.0, 2.0]), torch.tensor([5.0, 136**0.5]))
    # r = (0.5, 0.4)/0.45; G = (5, √136); target = Ḡ·r
    g = torch.tensor([5.0, 136**0.5])
    target = g.mean() * torch.tensor([0.5, 0.4]) / 0.45
    assert torch.allclose(info["target"], target)
    assert torch.allclose(gradient, torch.sign(g - target) * g)


class SmallNet(TaskModel):
    """Two shared tanh layers and a linear head per task: nonlinear, so the norms depend on the data."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(3, 4)
        self.last = nn.Linear(4, 4)
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in tasks})

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"first.{n}", p) for n, p in self.first.named_parameters()] + [
            (f"last.{n}", p) for n, p in self.last.named_parameters()
        ]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return list(self.last.parameters())

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        hidden = torch.tanh(self.last(torch.tanh(self.first(batch["x"]))))
        return TaskOutput(loss=((self.heads[task](hidden).squeeze(-1) - batch["y"]) ** 2).mean())


def make_batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(5, 3, generator=g), "y": torch.randn(5, generator=g)}


def reference_gradnorm(
    model: SmallNet, batch: list[tuple[str, Any]], weights: torch.Tensor, initial: torch.Tensor, alpha: float, on: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Chen et al.'s GradNorm by double backward: ∂L_grad/∂w and ∇ of Σ w_t L_t for every parameter."""
    w = weights.clone().requires_grad_(True)
    W = (
        list(model.last.parameters())
        if on == "last_shared"
        else list(model.first.parameters()) + list(model.last.parameters())
    )
    losses = torch.stack([model(task, data).loss for task, data in batch])
    norms = []
    for i in range(len(batch)):
        grads = torch.autograd.grad(w[i] * losses[i], W, retain_graph=True, create_graph=True)
        norms.append(torch.cat([g.reshape(-1) for g in grads]).norm())
    G = torch.stack(norms)
    rate = losses.detach() / initial
    target = (G.mean() * (rate / rate.mean()) ** alpha).detach()
    (weight_grad,) = torch.autograd.grad((G - target).abs().sum(), w, retain_graph=True)
    total = (w.detach() * losses).sum()
    model_grads = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
    return weight_grad, {n: g for (n, _), g in zip(model.named_parameters(), model_grads)}


@pytest.mark.parametrize("on", ["last_shared", "all_shared"])
def test_weight_gradient_and_model_gradient_match_double_backward(on: str) -> None:
    tasks = ["t1", "t2", "t3"]
    algorithm = GradNorm(tasks_per_step=3, alpha=1.5, gradient_on=on)
    model = SmallNet(tasks)
    reference_model = copy.deepcopy(model)
    module = FakeModule(model, tasks, torch.optim.SGD(model.parameters(), lr=1.0))
    algorithm.setup(module)
    first = [(t, make_batch(i)) for i, t in enumerate(tasks)]
    algorithm.training_step(module, first)  # records L(0), moves the weights
    reference_model.load_state_dict(model.state_dict())
    initial = algorithm.initial_losses.clone()
    weights = algorithm.weights.clone()

    second = [(t, make_batch(10 + i)) for i, t in enumerate(tasks)]
    expected_weight_grad, expected_model_grads = reference_gradnorm(reference_model, second, weights, initial, 1.5, on)
    captured: dict[str, torch.Tensor] = {}
    original = algorithm.update_weights

    def capture(sampled: list[int], gradient: torch.Tensor) -> None:
        captured["gradient"] = gradient.clone()
        original(sampled, gradient)

    algorithm.update_weights = capture  # type: ignore[method-assign]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    algorithm.training_step(module, second)

    assert torch.allclose(captured["gradient"], expected_weight_grad, atol=1e-5)
    for name, p in model.named_parameters():  # SGD with lr 1: the step is minus the gradient
        expected = expected_model_grads[name]
        expected = torch.zeros_like(p) if expected is None else expected
        assert torch.allclose(before[name] - p.detach(), expected, atol=1e-5), name
    assert torch.equal(algorithm.initial_losses, initial)  # recorded once, not overwritten


def test_initial_losses_recorded_only_the_first_time_each_task_is_sampled() -> None:
    algorithm = GradNorm(tasks_per_step=2, weight_lr=0.05)
    model, module = linear_setup(algorithm)
    model.set_losses({"t1": 4.0, "t2": 8.0})
    algorithm.training_step(module, [("t1", None), ("t2", None)])
    model.set_losses({"t1": 3.0, "t3": 6.0})
    algorithm.training_step(module, [("t1", None), ("t3", None)])
    model.set_losses({"t2": 1.0, "t3": 2.0})
    algorithm.training_step(module, [("t2", None), ("t3", None)])
    assert algorithm.initial_losses.tolist() == pytest.approx([4.0, 8.0, 6.0])


def test_weights_renormalise_to_the_task_count_and_stay_positive() -> None:
    algorithm = GradNorm(tasks_per_step=2, weight_lr=0.5)
    linear_setup(algorithm)
    algorithm.update_weights([0, 1], torch.tensor([+1.0, +2.0]))  # both down by 0.5 -> (0.5, 0.5, 1) -> ×1.5
    assert torch.allclose(algorithm.weights, torch.tensor([0.75, 0.75, 1.5]))
    for _ in range(10):  # t1 pushed down hard: clamped at MIN_WEIGHT before renormalising, never negative
        algorithm.update_weights([0, 1], torch.tensor([+1.0, -1.0]))
        assert algorithm.weights.min() > 0
        assert float(algorithm.weights.sum()) == pytest.approx(3.0)
    assert 0 < float(algorithm.weights[0]) <= MIN_WEIGHT


def test_unsampled_weights_keep_their_optimizer_state_untouched() -> None:
    algorithm = GradNorm(tasks_per_step=2, weight_lr=0.1)
    linear_setup(algorithm)
    algorithm.update_weights([0, 1], torch.tensor([+1.0, -1.0]))
    algorithm.update_weights([0, 1], torch.tensor([+1.0, -1.0]))  # t3 never had a gradient: no Adam state
    state = algorithm.state_dict()["optimizer"]["state"]
    assert set(state) == {0, 1}


def test_state_round_trip_resumes_exactly_and_never_reinitialises() -> None:
    def run(steps: list[int], algorithm: GradNorm, model: SmallNet, module: FakeModule) -> None:
        for s in steps:
            tasks = ["t1", "t2"] if s % 2 else ["t2", "t3"]
            algorithm.training_step(module, [(t, make_batch(100 * s + i)) for i, t in enumerate(tasks)])

    tasks = ["t1", "t2", "t3"]
    algorithm, model = GradNorm(tasks_per_step=2, weight_lr=0.05), SmallNet(tasks)
    module = FakeModule(model, tasks, torch.optim.SGD(model.parameters(), lr=0.1))
    algorithm.setup(module)
    run([1, 2], algorithm, model, module)
    state = algorithm.state_dict()
    assert state["task_names"] == tasks and state["weights"].device.type == "cpu"
    snapshot = copy.deepcopy(state)

    resumed_model = copy.deepcopy(model)
    resumed_module = FakeModule(resumed_model, tasks, torch.optim.SGD(resumed_model.parameters(), lr=0.1))
    resumed = GradNorm(tasks_per_step=2, weight_lr=0.05)
    resumed.load_state_dict(state)  # Lightning restores before on_fit_start calls setup
    resumed.setup(resumed_module)
    assert torch.equal(resumed.weights, algorithm.weights)
    assert torch.equal(resumed.initial_losses.isnan(), algorithm.initial_losses.isnan())

    run([3, 4, 5], algorithm, model, module)
    run([3, 4, 5], resumed, resumed_model, resumed_module)
    assert torch.equal(resumed.weights, algorithm.weights)
    assert torch.equal(resumed.initial_losses.nan_to_num(), algorithm.initial_losses.nan_to_num())
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)
    # a second setup (another fit on the same module) keeps the learned weights
    weights = resumed.weights.clone()
    resumed.setup(resumed_module)
    assert torch.equal(resumed.weights, weights)
    assert torch.equal(snapshot["weights"], state["weights"])  # state_dict() returned a copy


def test_losses_below_the_floor_are_rejected_with_a_clear_error() -> None:
    algorithm = GradNorm(tasks_per_step=2)
    model, module = linear_setup(algorithm)
    model.set_losses({"t1": -3.0, "t2": -1.0})
    with pytest.raises(ValueError, match="loss_floor"):
        algorithm.training_step(module, [("t1", None), ("t2", None)])
    shifted = GradNorm(tasks_per_step=2, loss_floor=-10.0)
    model, module = linear_setup(shifted)
    model.set_losses({"t1": -3.0, "t2": -1.0})
    shifted.training_step(module, [("t1", None), ("t2", None)])
    assert shifted.initial_losses[:2].tolist() == pytest.approx([-3.0, -1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks_per_step": 0}, "tasks_per_step"),
        ({"q": -0.1}, "q must be"),
        ({"alpha": -1.0}, "alpha"),
        ({"weight_lr": 0.0}, "weight_lr"),
        ({"gradient_on": "first_shared"}, "gradient_on"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GradNorm(**kwargs)


def test_unknown_task_in_batch_is_rejected() -> None:
    algorithm = GradNorm(tasks_per_step=2)
    _, module = linear_setup(algorithm)
    with pytest.raises(ValueError, match="weights for tasks"):
        algorithm.training_step(module, [("t1", None), ("t9", None)])


def test_synthetic_config_fits_and_records_the_trajectory(tmp_path: Path) -> None:
    cli = run_cli(["--config", str(SYNTHETIC / "gradnorm.yaml"), "--trainer.max_steps=5"], tmp_path)
    rows = read_trajectory(log_dir(cli) / "trajectory.csv")
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert all(r["phase"] == "step" and r["task"] == "all" for r in rows[1:])
    assert (float(rows[-1]["x"]), float(rows[-1]["y"])) != (20.0, 5.0)
    algorithm = cli.model.algorithm
    assert float(algorithm.weights.sum()) == pytest.approx(3.0)
    assert not torch.isnan(algorithm.initial_losses).any()


@pytest.mark.slow
def test_cli_resume_from_a_mid_run_checkpoint_is_exact(tmp_path: Path) -> None:
    algorithm = {
        "class_path": "lightning_modules.algorithms.gradnorm.GradNorm",
        "init_args": {"tasks_per_step": 2, "weight_lr": 0.05},
    }
    tasks = {"a": 24, "b": 40, "c": 32}
    full = run_cli(["--config", str(tiny_config(tmp_path / "full.yaml", algorithm, tasks=tasks))], tmp_path / "full")
    half_config = tiny_config(tmp_path / "half.yaml", algorithm, tasks=tasks, max_steps=6, every_n_train_steps=6)
    half = run_cli(["--config", str(half_config)], tmp_path / "half")
    checkpoint = log_dir(half) / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(checkpoint)["multitask"]["algorithm_state"]
    assert torch.equal(saved["weights"], half.model.algorithm.weights)
    resumed = run_cli(
        ["--config", str(tiny_config(tmp_path / "resume.yaml", algorithm, tasks=tasks)), f"--ckpt_path={checkpoint}"],
        tmp_path / "half",
    )
    assert resumed.trainer.global_step == full.trainer.global_step == 12
    assert torch.equal(resumed.model.algorithm.weights, full.model.algorithm.weights)
    assert torch.equal(resumed.model.algorithm.initial_losses, full.model.algorithm.initial_losses)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
