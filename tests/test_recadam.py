"""RecAdam: several steps against an independent re-implementation of the authors' RecAdam optimizer step
(sigmoid, linear and constant annealing; lr scheduler; heads on plain Adam), λ(t), the checks at setup,
the step counter as the only saved state, and the synthetic config."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from lightning_modules.algorithms.recadam import RecAdam, anneal_lambda
from lightning_modules.models.base import TaskModel, TaskOutput
from tests.helpers import SYNTHETIC, log_dir, read_trajectory, run_cli

PRETRAINED = [0.5, -0.3]
TASKS = ["t1", "t2"]


class FakeModule:
    """A `TrainingModule` (what an Algorithm sees of MultiTaskModule): task losses, one optimizer step (then the
    lr scheduler, as MultiTaskModule.optimizer_step does), logging and step listeners."""

    def __init__(self, model: TaskModel, optimizer: torch.optim.Optimizer, scheduler: Any = None) -> None:
        self.model = model
        self.task_names = TASKS
        self.trainer = SimpleNamespace(max_steps=-1)
        self.optimizer = optimizer
        self.scheduler = scheduler
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
        if self.scheduler is not None:
            self.scheduler.step()

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


class PretrainedEncoder(TaskModel):
    """A pretrained 2-D encoder θ (θ* = PRETRAINED) and an unpretrained scalar head per task, in float64."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
        self.heads = nn.ParameterDict({t: nn.Parameter(torch.tensor(0.1, dtype=torch.float64)) for t in TASKS})
        self.inputs = {"t1": torch.tensor([1.0, -2.0], dtype=torch.float64), "t2": torch.tensor([0.5, 1.5])}
        self.targets = {"t1": 0.7, "t2": -1.2}

    def forward(self, task: str, batch: Any) -> TaskOutput:
        x = self.inputs[task].to(torch.float64)
        prediction = torch.tanh(self.encoder @ x) * (1 + self.heads[task]) + self.heads[task]
        return TaskOutput(loss=(prediction - self.targets[task]) ** 2)

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [("encoder", self.encoder)]

    def pretrained_reference(self) -> dict[str, torch.Tensor]:
        return {"encoder": torch.tensor(PRETRAINED, dtype=torch.float64)}


# ----------------------------------------------------------------------------------- the authors' algorithm
def reference_lambda(function: str, step: int, k: float, t0: float, w: float) -> float:
    if function == "sigmoid":
        return w / (1 + math.exp(-k * (step - t0)))
    if function == "linear":
        return w * min(1.0, step / t0)
    return w


def reference_recadam_step(
    p: torch.Tensor,
    grad: torch.Tensor,
    state: dict[str, Any],
    pretrained: torch.Tensor | None,
    lr: float,
    eps: float,
    anneal: tuple[str, float, float, float],
    gamma: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.Tensor:
    """One step of Chen et al.'s RecAdam.step for one parameter (pretrained=None: the anneal_w = 0 group)."""
    beta1, beta2 = betas
    if not state:
        state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
    state["step"] += 1
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad
    state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad
    denom = state["exp_avg_sq"].sqrt() + eps
    step_size = lr * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
    function, k, t0, w = anneal
    if pretrained is not None and w > 0:
        lam = reference_lambda(function, state["step"], k, t0, w)
        p = p - step_size * lam * state["exp_avg"] / denom
        p = p - lr * (w - lam) * gamma * (p - pretrained)
    else:
        p = p - step_size * state["exp_avg"] / denom
    return p


def run_both(
    algorithm: RecAdam, steps: int, lr: float, eps: float, lr_decay: float | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], FakeModule]:
    """`steps` steps of the algorithm (torch.optim.Adam) and of the reference from the same start."""
    model = PretrainedEncoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=eps)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=lr_decay) if lr_decay else None
    module = FakeModule(model, optimizer, scheduler)
    algorithm.setup(module)

    reference = PretrainedEncoder()
    states: dict[str, dict[str, Any]] = {name: {} for name, _ in reference.named_parameters()}
    pretrained = reference.pretrained_reference()
    anneal = (algorithm.anneal_fun, algorithm.anneal_k, algorithm.anneal_t0, algorithm.anneal_w)
    for step in range(steps):
        algorithm.training_step(module, [(t, None) for t in TASKS])
        step_lr = lr * (lr_decay**step if lr_decay else 1.0)
        loss = sum(reference(t, None).loss for t in TASKS)
        names = [name for name, _ in reference.named_parameters()]
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        with torch.no_grad():
            for name, p, g in zip(names, list(reference.parameters()), grads):
                new = reference_recadam_step(
                    p.detach(), g, states[name], pretrained.get(name), step_lr, eps, anneal, algorithm.pretrain_coef
                )
                p.copy_(new)
    ours = {n: p.detach().clone() for n, p in model.named_parameters()}
    theirs = {n: p.detach().clone() for n, p in reference.named_parameters()}
    return ours, theirs, module


@pytest.mark.parametrize(
    "kwargs",
    [
        {"anneal_fun": "sigmoid", "anneal_k": 0.5, "anneal_t0": 3},
        {"anneal_fun": "linear", "anneal_t0": 4},
        {"anneal_fun": "sigmoid", "anneal_k": 1.0, "anneal_t0": 2, "anneal_w": 0.8},
        {"anneal_fun": "constant"},
    ],
)
def test_steps_match_the_authors_recadam_exactly_without_epsilon(kwargs: dict[str, Any]) -> None:
    # eps = 0: torch's Adam and the authors' (HF AdamW-style) step are then the same formula. The reference
    # gives the heads the authors' anneal_w = 0 branch (plain Adam), so they are checked too.
    algorithm = RecAdam(tasks_per_step=2, pretrain_coef=50.0, **kwargs)
    ours, theirs, module = run_both(algorithm, steps=6, lr=0.01, eps=0.0)
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], rtol=0, atol=1e-12), name
    assert algorithm.step == 6
    assert module.logged["recadam/lambda"] == pytest.approx(algorithm.current_lambda(6))
    assert module.emitted[-1] == ("step", TASKS)
    # the pull did something: the encoder differs from a run without it (plain Adam, λ = 1)
    plain, _, _ = run_both(RecAdam(tasks_per_step=2, anneal_w=0.0), steps=6, lr=0.01, eps=0.0)
    if kwargs["anneal_fun"] != "constant":
        assert not torch.allclose(ours["encoder"], plain["encoder"], atol=1e-4)


def test_pull_uses_the_lr_of_its_step_under_a_decaying_schedule() -> None:
    # MultiTaskModule steps the lr scheduler right after the optimizer; the pull belongs to the same step
    algorithm = RecAdam(tasks_per_step=2, anneal_fun="sigmoid", anneal_k=0.5, anneal_t0=3, pretrain_coef=80.0)
    ours, theirs, _ = run_both(algorithm, steps=6, lr=0.01, eps=0.0, lr_decay=0.7)
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], rtol=0, atol=1e-12), name


def test_steps_match_to_epsilon_effects_with_the_default_epsilon() -> None:
    # torch adds ε to √v̂ (after bias correction), the authors to √v: the steps differ by O(ε/√v)
    algorithm = RecAdam(tasks_per_step=2, anneal_fun="linear", anneal_t0=4, pretrain_coef=80.0)
    ours, theirs, _ = run_both(algorithm, steps=6, lr=0.01, eps=1e-8)
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], rtol=0, atol=1e-6), name


def test_anneal_functions_by_hand() -> None:
    assert anneal_lambda("sigmoid", 250, 0.5, 250, 1.0) == 0.5
    assert anneal_lambda("sigmoid", 252, 0.5, 250, 1.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert anneal_lambda("sigmoid", 1, 0.5, 250, 1.0) == pytest.approx(math.exp(-124.5), rel=1e-9)
    assert anneal_lambda("sigmoid", 1, 50.0, 1e6, 1.0) == 0.0  # no overflow
    assert anneal_lambda("linear", 50, 0.5, 200, 1.0) == 0.25
    assert anneal_lambda("linear", 400, 0.5, 200, 0.5) == 0.5
    assert anneal_lambda("constant", 3, 0.5, 200, 0.7) == 0.7


def test_non_adam_optimizer_is_rejected_at_setup() -> None:
    model = PretrainedEncoder()
    module = FakeModule(model, torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(TypeError, match="torch.optim.Adam or torch.optim.AdamW.*SGD"):
        RecAdam().setup(module)
    adamw = FakeModule(model, torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.0))
    RecAdam(pretrain_coef=50.0).setup(adamw)  # AdamW is fine


def test_setup_rejects_models_without_pretrained_parameters_and_an_overshooting_pull() -> None:
    class Unpretrained(PretrainedEncoder):
        def pretrained_reference(self) -> dict[str, torch.Tensor]:
            return {}

    class WrongName(PretrainedEncoder):
        def pretrained_reference(self) -> dict[str, torch.Tensor]:
            return {"decoder": torch.zeros(2)}

    for model_class, message in ((Unpretrained, "pretrained_reference"), (WrongName, "does not have")):
        model = model_class()
        with pytest.raises(ValueError, match=message):
            RecAdam().setup(FakeModule(model, torch.optim.Adam(model.parameters(), lr=0.01)))
    model = PretrainedEncoder()
    with pytest.raises(ValueError, match="overshoots"):  # lr·γ = 0.01·5000 = 50
        RecAdam().setup(FakeModule(model, torch.optim.Adam(model.parameters(), lr=0.01)))


def test_checkpoint_state_is_only_the_step_counter() -> None:
    algorithm = RecAdam(tasks_per_step=2, anneal_fun="linear", anneal_t0=10, pretrain_coef=50.0)
    run_both(algorithm, steps=3, lr=0.01, eps=0.0)
    assert algorithm.state_dict() == {"step": 3}
    resumed = RecAdam(tasks_per_step=2, anneal_fun="linear", anneal_t0=10, pretrain_coef=50.0)
    resumed.load_state_dict({"step": 3})
    assert resumed.current_lambda() == pytest.approx(0.4)  # the next step is t = 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks_per_step": 0}, "tasks_per_step"),
        ({"q": -1.0}, "q must be"),
        ({"anneal_fun": "cosine"}, "anneal_fun"),
        ({"anneal_k": -0.1}, "anneal_k"),
        ({"anneal_fun": "linear", "anneal_t0": 0}, "anneal_t0"),
        ({"anneal_w": -1.0}, "anneal_w"),
        ({"pretrain_coef": -1.0}, "pretrain_coef"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecAdam(**kwargs)


def test_synthetic_config_fits_and_holds_the_pretrained_point_early(tmp_path: Path) -> None:
    cli = run_cli(["--config", str(SYNTHETIC / "recadam.yaml"), "--trainer.max_steps=5"], tmp_path)
    rows = read_trajectory(log_dir(cli) / "trajectory.csv")
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert all(r["phase"] == "step" and r["task"] == "all" for r in rows[1:])
    # λ(t ≤ 5) ≈ 0 with the sigmoid centred at t0 = 250: φ stays at the pretrained (initial) point
    assert abs(float(rows[-1]["x"]) - 20.0) < 1e-3 and abs(float(rows[-1]["y"]) - 5.0) < 1e-3
    assert cli.model.algorithm.step == 5
