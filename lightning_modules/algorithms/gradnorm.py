"""GradNorm (Chen et al., ICML 2018): learn loss weights w_t that balance the tasks' gradient norms.

One step, for the m sampled tasks (Chen et al. 2018, Algorithm 1, on the MTL schedule):

    L       = Σ_t w_t L_t                          the model is trained on this (weights before their update)
    G_t     = ||∇_W w_t L_t|| = w_t ||∇_W L_t||     W: the last shared layer (paper) or all shared parameters
    Ḡ       = mean_t G_t,   L̃_t = L_t / L_t(0),   r_t = L̃_t / mean_t L̃_t
    L_grad  = Σ_t |G_t − Ḡ r_t^α|                   the target Ḡ r_t^α is a constant
    ∂L_grad/∂w_t = sign(G_t − Ḡ r_t^α) ||∇_W L_t||   (closed form, since G_t is linear in w_t > 0)

w takes one step of its own optimizer on ∂L_grad/∂w and is renormalised to Σ_t w_t = T (all training tasks).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import torch

from datamodules.schedule import IIDSchedule
from lightning_modules.algorithms.base import Algorithm
from lightning_modules.precision import full_precision, widen
from lightning_modules.task_gradients import set_shared_gradient, split_parameters, weighted_gradient

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule

GRADIENT_ON = ("last_shared", "all_shared")
# A weight is kept at least this large: GradNorm's G_t = w_t ||∇_W L_t|| assumes w_t > 0, and one optimizer
# step can overshoot 0 (the paper does not say; 0 would silence a task for good).
MIN_WEIGHT = 1e-4


class GradNorm(Algorithm):
    """Chen et al. (2018) on the MTL schedule (m tasks per step, p_t ∝ N_t^q).

    Args:
        tasks_per_step: m tasks per step (paper §4.2: 8).
        q: task sampling exponent (paper §4.2: 1/5).
        alpha: GradNorm's asymmetry α. Chen et al. report 0.12–3 across their experiments and the Sequential
            Reptile paper does not give its value; 1.5 is Chen et al.'s value for NYUv2.
        weight_lr: learning rate of the weights' own Adam. Chen et al. update w with the network's optimizer;
            at the fine-tuning lr of 3e-5 an Adam step moves a weight by about 3e-5, so the weights would hardly
            move, hence a separate, larger rate (a weight of order 1 moves by about weight_lr per step).
        gradient_on: W, the parameters whose gradient norms are balanced: "last_shared" (the paper's choice,
            `model.last_shared_parameters()`, cheap) or "all_shared".
        loss_floor: a lower bound of every task loss. The training rate is L̃_t = (L_t − floor) / (L_t(0) − floor);
            GradNorm assumes positive losses (floor 0, e.g. cross-entropy). The synthetic landscape's losses lie
            in (−200, 0], so its config sets −200.

    The weights, the initial losses and the weights' optimizer state are saved in checkpoints; the weights are
    set to 1 once, at the first setup, and L_t(0) is the loss at the first step that samples task t.

    Under mixed precision the norms and the weights' update are computed outside autocast in float32; a step the
    fp16 GradScaler skips (an overflow) leaves the weights as they were.
    """

    label = "GradNorm"

    def __init__(
        self,
        tasks_per_step: int = 8,
        q: float = 0.2,
        alpha: float = 1.5,
        weight_lr: float = 0.025,
        gradient_on: Literal["last_shared", "all_shared"] = "last_shared",
        loss_floor: float = 0.0,
    ) -> None:
        if tasks_per_step < 1:
            raise ValueError(f"tasks_per_step must be >= 1, got {tasks_per_step}")
        if q < 0:
            raise ValueError(f"task sampling exponent q must be >= 0, got {q}")
        if alpha < 0:
            raise ValueError(f"GradNorm's alpha must be >= 0, got {alpha}")
        if not weight_lr > 0:
            raise ValueError(f"weight_lr (the loss weights' learning rate) must be > 0, got {weight_lr}")
        if gradient_on not in GRADIENT_ON:
            raise ValueError(f"gradient_on must be one of {GRADIENT_ON}, got {gradient_on!r}")
        self.tasks_per_step = tasks_per_step
        self.q = q
        self.alpha = alpha
        self.weight_lr = weight_lr
        self.gradient_on = gradient_on
        self.loss_floor = loss_floor
        self._task_names: list[str] | None = None
        self._weights: list[torch.Tensor] | None = None  # one 0-d leaf per task, so Adam skips unsampled tasks
        self._initial_losses: torch.Tensor | None = None  # [T], NaN until the task is first seen
        self._optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None  # loaded before setup (resume)
        self._columns: torch.Tensor | slice | None = None

    def schedule(self) -> IIDSchedule:
        return IIDSchedule(tasks_per_step=self.tasks_per_step, q=self.q)

    # ------------------------------------------------------------------ state
    @property
    def weights(self) -> torch.Tensor:
        """The current weights [T], in the order of `task_names`."""
        if self._weights is None:
            raise RuntimeError("GradNorm is not set up yet (setup(module) runs at the start of fit)")
        return torch.stack([w.detach() for w in self._weights])

    @property
    def initial_losses(self) -> torch.Tensor:
        if self._initial_losses is None:
            raise RuntimeError("GradNorm is not set up yet (setup(module) runs at the start of fit)")
        return self._initial_losses

    @property
    def task_names(self) -> list[str]:
        if self._task_names is None:
            raise RuntimeError("GradNorm is not set up yet (setup(module) runs at the start of fit)")
        return self._task_names

    def setup(self, module: TrainingModule) -> None:
        task_names = list(module.task_names)
        if not task_names:
            raise ValueError("GradNorm needs the module's training tasks (module.task_names is empty)")
        device = next(iter(module.trainable_parameters())).device
        if self._pending is not None:
            self._restore(self._pending, task_names, device)
            self._pending = None
        elif self._weights is None:
            self._task_names = task_names
            self._weights = [torch.ones((), device=device, requires_grad=True) for _ in task_names]
            self._initial_losses = torch.full((len(task_names),), float("nan"), device=device)
            self._optimizer = torch.optim.Adam(self._weights, lr=self.weight_lr)
        else:  # a second fit on the same module: keep the weights, follow the parameters' device
            if task_names != self._task_names:
                raise ValueError(f"GradNorm was set up for tasks {self._task_names}, this run has {task_names}")
            self._move(device)
        self._columns = self._weight_columns(module)

    def _restore(self, state: dict[str, Any], task_names: list[str], device: torch.device) -> None:
        if state["task_names"] != task_names:
            raise ValueError(f"GradNorm state was saved for tasks {state['task_names']}, this run has {task_names}")
        self._task_names = list(task_names)
        self._weights = [w.to(device).clone().requires_grad_(True) for w in state["weights"].unbind()]
        self._initial_losses = state["initial_losses"].to(device).clone()
        self._optimizer = torch.optim.Adam(self._weights, lr=self.weight_lr)
        self._optimizer.load_state_dict(state["optimizer"])

    def _move(self, device: torch.device) -> None:
        assert self._weights is not None and self._initial_losses is not None and self._optimizer is not None
        if self._weights[0].device == device:
            return
        self._restore(self.state_dict(), self.task_names, device)

    def state_dict(self) -> dict[str, Any]:
        if self._pending is not None:
            return copy.deepcopy(self._pending)
        if self._weights is None:
            return {}
        assert self._optimizer is not None
        return {
            "task_names": list(self.task_names),
            "weights": self.weights.cpu().clone(),
            "initial_losses": self.initial_losses.cpu().clone(),
            "optimizer": copy.deepcopy(self._optimizer.state_dict()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the weights, L_t(0) and the weights' optimizer state (applied on the device at setup)."""
        if not state:
            return
        missing = {"task_names", "weights", "initial_losses", "optimizer"} - set(state)
        if missing:
            raise ValueError(f"GradNorm state is missing {sorted(missing)}")
        self._pending = copy.deepcopy(state)
        if self._weights is not None:  # already set up (loaded mid-run): apply now, on the current device
            device = self._weights[0].device
            self._weights = None
            self._restore(self._pending, state["task_names"], device)
            self._pending = None

    # ------------------------------------------------------------------ step
    def _weight_columns(self, module: TrainingModule) -> torch.Tensor | slice:
        """The entries of a jacobian row that belong to W."""
        shared, _ = split_parameters(module)
        if not shared:
            raise ValueError("GradNorm needs trainable shared parameters (model.shared_named_parameters() is empty)")
        if self.gradient_on == "all_shared":
            return slice(None)
        last = module.model.last_shared_parameters()
        if not last:
            raise ValueError("GradNorm(gradient_on='last_shared'): model.last_shared_parameters() is empty")
        offsets, offset = {}, 0
        for p in shared:
            offsets[id(p)] = (offset, offset + p.numel())
            offset += p.numel()
        outside = [tuple(p.shape) for p in last if id(p) not in offsets]
        if outside:
            raise ValueError(
                f"GradNorm: last_shared_parameters() has parameters of shapes {outside} that are not trainable "
                "shared parameters (shared_named_parameters())"
            )
        device = shared[0].device
        return torch.cat([torch.arange(*offsets[id(p)], device=device) for p in last])

    def weight_gradient(
        self, sampled: list[int], losses: torch.Tensor, grad_norms: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """∂L_grad/∂w_t for the sampled task indices, from their losses and ||∇_W L_t|| (both [m]).

        Records L_t(0) for tasks seen for the first time. Returns the gradient [m] and diagnostics.
        """
        index = torch.tensor(sampled, device=losses.device)
        initial = self.initial_losses
        first = torch.isnan(initial[index])
        if first.any():
            initial[index[first]] = losses[first].to(initial)
        above_floor = losses - self.loss_floor
        initial_above = initial[index].to(losses) - self.loss_floor
        if (initial_above <= 0).any() or (above_floor < 0).any():
            bad = [self.task_names[i] for i, a, b in zip(sampled, above_floor, initial_above) if a < 0 or b <= 0]
            raise ValueError(
                f"GradNorm's training rate (L_t − loss_floor)/(L_t(0) − loss_floor) needs losses above loss_floor "
                f"({self.loss_floor}); task(s) {bad} have loss {losses.tolist()} and initial loss "
                f"{initial[index].tolist()}. Set loss_floor to a lower bound of the losses"
            )
        rate = above_floor / initial_above
        inverse_rate = rate / rate.mean()
        weights = torch.stack([self._weights[i].detach() for i in sampled]).to(grad_norms)  # type: ignore[index]
        g = weights * grad_norms
        target = g.mean() * inverse_rate.pow(self.alpha)
        gradient = torch.sign(g - target) * grad_norms
        return gradient, {"G": g, "target": target, "gradnorm_loss": (g - target).abs().sum()}

    @torch.no_grad()
    def update_weights(self, sampled: list[int], gradient: torch.Tensor) -> None:
        """One step of the weights' optimizer on the sampled entries, then w ← max(w, MIN_WEIGHT)·T/Σw."""
        assert self._weights is not None and self._optimizer is not None
        for w in self._weights:
            w.grad = None
        for i, g in zip(sampled, gradient):
            w = self._weights[i]
            w.grad = g.to(w) if w.grad is None else w.grad + g.to(w)
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        stacked = torch.stack(self._weights).clamp_(min=MIN_WEIGHT)
        stacked.mul_(len(self._weights) / stacked.sum())
        for w, value in zip(self._weights, stacked):
            w.copy_(value)

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:
        if self._weights is None:
            self.setup(module)
        tasks = [task for task, _ in batch]
        unknown = [t for t in tasks if t not in self.task_names]
        if unknown:
            raise ValueError(f"GradNorm has weights for tasks {self.task_names}, the batch has {unknown}")
        sampled = [self.task_names.index(t) for t in tasks]
        weights = self.weights[sampled]  # the weights this step's loss uses (before their update)

        shared, specific = split_parameters(module)
        assert self._columns is not None
        combined, on_w, losses, scale, finite = weighted_gradient(
            module, batch, shared, specific, weights, self._columns
        )
        losses = widen(module.all_reduce_mean(losses))  # identical on every rank, so the weights stay in sync
        with full_precision(combined.device):
            set_shared_gradient(shared, scale.rescale(combined))
            if finite:
                grad_norms = torch.linalg.vector_norm(on_w, dim=1)
                gradient, info = self.weight_gradient(sampled, losses, grad_norms)
        module.optimizer_step()
        if finite and not scale.skipped():
            self.update_weights(sampled, gradient)
            module.log("gradnorm/loss", info["gradnorm_loss"], on_step=True, on_epoch=False, batch_size=1)
        for name, value in zip(self.task_names, self.weights):
            module.log(f"gradnorm/weight/{name}", value, on_step=True, on_epoch=False, batch_size=1)
        module.emit("step", tasks)
        return (weights.to(losses) * losses).sum()
