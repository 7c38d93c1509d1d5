"""RecAdam (Chen et al., EMNLP 2020, "Recall and Learn") on the MTL objective.

The authors' optimizer (RecAdam.py in github.com/Sanyuan-Chen/RecAdam) minimises
λ(t)·L_target + (1 − λ(t))·γ/2·||θ − θ*||² with Adam, the penalty decoupled from Adam's moments. For a
pretrained parameter θ (θ* its pretrained value), one step is

    θ ← θ − λ(t)·step_size·m̂/(√v̂ + ε)          Adam's step, scaled by λ(t)
    θ ← θ − lr·(w − λ(t))·γ·(θ − θ*)            the quadratic pull (on the θ just updated)

with λ(t) = w·f(t), t = 1, 2, ... the step, f one of
    sigmoid   f(t) = 1 / (1 + exp(−k (t − t0)))
    linear    f(t) = min(1, t / t0)
    constant  f(t) = 1                          (no pull; Adam's step scaled by w)
Parameters without a pretrained value (task heads) get the plain Adam step.

Here the step is generic over the configured Adam/AdamW: snapshot θ, run the optimizer step (θ_adam), set
θ ← θ + λ(t)(θ_adam − θ), then apply the pull with the parameter group's lr of that step. With
weight_decay = 0 (the authors' run scripts' default) this is the authors' update; the only numerical difference
is where ε enters (torch adds it to √v̂ after bias correction, the authors to √v before it), negligible at
ε = 1e-8. With AdamW's weight decay, the decay is part of θ_adam − θ and is also scaled by λ(t); the authors
apply it unscaled, after the pull.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch

from datamodules.schedule import IIDSchedule
from lightning_modules.algorithms.base import Algorithm
from lightning_modules.precision import LossScale

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule

ANNEAL_FUNCTIONS = ("sigmoid", "linear", "constant")


def anneal_lambda(function: str, step: int, k: float, t0: float, w: float) -> float:
    """λ(t) of RecAdam: w·f(t) for the step t (1 at the first optimizer step)."""
    if function == "sigmoid":
        # 1/(1+exp(-x)) without overflow for very negative x
        x = k * (step - t0)
        f = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    elif function == "linear":
        f = min(1.0, step / t0)
    elif function == "constant":
        f = 1.0
    else:
        raise ValueError(f"anneal_fun must be one of {ANNEAL_FUNCTIONS}, got {function!r}")
    return f * w


class RecAdam(Algorithm):
    """The MTL step (sum of the losses of m sampled tasks, p_t ∝ N_t^q) with RecAdam's update.

    Args:
        tasks_per_step: m tasks per step (paper §4.2: 8).
        q: task sampling exponent (paper §4.2: 1/5).
        anneal_fun: λ(t)'s shape: "sigmoid" (the authors' choice), "linear" or "constant".
        anneal_k: the sigmoid's slope k. The authors' run script defaults to 0.5 (their README searches
            {0.05, 0.1, 0.2, 0.5, 1}).
        anneal_t0: the sigmoid's midpoint / the linear ramp's length t0. Script default 250 (searched
            {100, 250, 500, 1000}).
        anneal_w: the scale w of λ(t) (script default 1.0). 0 turns RecAdam off (plain Adam), as in the
            authors' code.
        pretrain_coef: γ, the quadratic penalty's coefficient (script default and README: 5000).

    Which parameters are pretrained: the names in `model.pretrained_reference()`, reloaded at setup and never
    saved in checkpoints (a checkpoint stores only the step counter). The inner optimizer is the `optimizer:`
    section, which must be torch.optim.Adam or AdamW.

    Under fp16 loss scaling a step the GradScaler skips (an overflow) skips the whole RecAdam update: Adam's step,
    the pull towards θ* and the step counter of λ(t).
    """

    label = "RecAdam"

    def __init__(
        self,
        tasks_per_step: int = 8,
        q: float = 0.2,
        anneal_fun: Literal["sigmoid", "linear", "constant"] = "sigmoid",
        anneal_k: float = 0.5,
        anneal_t0: float = 250,
        anneal_w: float = 1.0,
        pretrain_coef: float = 5000.0,
    ) -> None:
        if tasks_per_step < 1:
            raise ValueError(f"tasks_per_step must be >= 1, got {tasks_per_step}")
        if q < 0:
            raise ValueError(f"task sampling exponent q must be >= 0, got {q}")
        if anneal_fun not in ANNEAL_FUNCTIONS:
            raise ValueError(f"anneal_fun must be one of {ANNEAL_FUNCTIONS}, got {anneal_fun!r}")
        if anneal_k < 0:
            raise ValueError(f"anneal_k (the sigmoid's slope) must be >= 0, got {anneal_k}")
        if anneal_t0 < 0 or (anneal_fun == "linear" and anneal_t0 <= 0):
            raise ValueError(f"anneal_t0 must be >= 0 (> 0 for linear annealing), got {anneal_t0}")
        if anneal_w < 0:
            raise ValueError(f"anneal_w (the scale of λ(t)) must be >= 0, got {anneal_w}")
        if pretrain_coef < 0:
            raise ValueError(f"pretrain_coef (γ) must be >= 0, got {pretrain_coef}")
        self.tasks_per_step = tasks_per_step
        self.q = q
        self.anneal_fun = anneal_fun
        self.anneal_k = anneal_k
        self.anneal_t0 = anneal_t0
        self.anneal_w = anneal_w
        self.pretrain_coef = pretrain_coef
        self.step = 0  # RecAdam steps taken; λ of the next step is λ(step + 1)
        self._pretrained: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def schedule(self) -> IIDSchedule:
        return IIDSchedule(tasks_per_step=self.tasks_per_step, q=self.q)

    def current_lambda(self, step: int | None = None) -> float:
        """λ(t) for step t (default: the next step)."""
        return anneal_lambda(
            self.anneal_fun, self.step + 1 if step is None else step, self.anneal_k, self.anneal_t0, self.anneal_w
        )

    def setup(self, module: TrainingModule) -> None:
        optimizer = _unwrap(module.optimizers())
        if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            raise TypeError(
                "RecAdam scales Adam's step, so the `optimizer:` section must be torch.optim.Adam or "
                f"torch.optim.AdamW, got {type(optimizer).__module__}.{type(optimizer).__name__}"
            )
        reference = module.model.pretrained_reference()
        if not reference:
            raise ValueError(
                "RecAdam needs pretrained parameters, but model.pretrained_reference() is empty "
                "(with none, RecAdam is plain MTL with Adam)"
            )
        named = dict(module.model.named_parameters())
        unknown = sorted(set(reference) - set(named))
        if unknown:
            raise ValueError(f"pretrained_reference() names parameters the model does not have: {unknown[:5]}")
        groups = _groups_by_parameter(optimizer)
        self._pretrained = []
        for name, value in reference.items():
            p = named[name]
            if not p.requires_grad:
                continue
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"pretrained value of '{name}' has shape {tuple(value.shape)}, the parameter {tuple(p.shape)}"
                )
            if id(p) not in groups:
                raise ValueError(f"pretrained parameter '{name}' is not in the optimizer's parameter groups")
            self._pretrained.append((p, value.detach().to(device=p.device, dtype=p.dtype).clone()))
        if self.anneal_w > 0:
            pull = max(float(groups[id(p)]["lr"]) for p, _ in self._pretrained)
            pull *= (self.anneal_w - self.current_lambda()) * self.pretrain_coef
            if pull >= 2:
                raise ValueError(
                    f"RecAdam's pull θ ← θ − lr·(w − λ)·γ·(θ − θ*) overshoots: lr·(w − λ(t))·γ = {pull:.3g} >= 2 "
                    "makes θ − θ* grow every step; lower pretrain_coef (γ) below 2/(lr·anneal_w) or the lr"
                )

    @torch.no_grad()
    def _snapshot(self, module: TrainingModule) -> list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor, float]]:
        """(θ, θ_old, θ*, lr) for the pretrained parameters that have a gradient this step (the authors skip
        the others); lr is read before the optimizer step, since the lr scheduler steps right after it."""
        groups = _groups_by_parameter(_unwrap(module.optimizers()))
        return [
            (p, p.detach().clone(), ref, float(groups[id(p)]["lr"]))
            for p, ref in self._pretrained
            if p.grad is not None
        ]

    @torch.no_grad()
    def _recadam_update(
        self, snapshot: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor, float]], lam: float
    ) -> None:
        """θ ← θ_old + λ(θ_adam − θ_old), then θ ← θ − lr·(w − λ)·γ·(θ − θ*)."""
        for p, old, ref, lr in snapshot:
            p.sub_(old).mul_(lam).add_(old)
            p.add_(p - ref, alpha=-lr * (self.anneal_w - lam) * self.pretrain_coef)

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:
        if not self._pretrained:
            self.setup(module)
        scale = LossScale(module)
        loss = torch.stack([module.task_loss(task, data) for task, data in batch]).sum()
        module.manual_backward(loss)
        lam = self.current_lambda()
        snapshot = self._snapshot(module) if self.anneal_w > 0 else []
        module.optimizer_step()
        if not scale.skipped():  # an fp16 overflow skips Adam's step: skip the pull and λ's step too
            self._recadam_update(snapshot, lam)
            self.step += 1
        module.log("recadam/lambda", lam, on_step=True, on_epoch=False, batch_size=1)
        module.emit("step", [task for task, _ in batch])
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if "step" not in state:
            raise ValueError("RecAdam state is missing 'step'")
        self.step = int(state["step"])


def _unwrap(optimizers: Any) -> torch.optim.Optimizer:
    """The raw optimizer behind Lightning's LightningOptimizer (RecAdam uses exactly one)."""
    if isinstance(optimizers, (list, tuple)):
        if len(optimizers) != 1:
            raise ValueError(f"RecAdam needs exactly one optimizer, got {len(optimizers)}")
        optimizers = optimizers[0]
    return getattr(optimizers, "optimizer", optimizers)


def _groups_by_parameter(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    """id(parameter) -> its param group (looked up each step: loading optimizer state replaces the groups)."""
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}
