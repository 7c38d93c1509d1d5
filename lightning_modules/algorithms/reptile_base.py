"""What Reptile and Sequential Reptile share: the anchor φ, inner trajectories, the outer interpolation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from lightning_modules.algorithms.base import Algorithm

if TYPE_CHECKING:
    from lightning_modules.algorithms.protocol import TrainingModule


class ReptileFamily(Algorithm):
    """Keeps φ (a copy of the trainable parameters taken at the first step) and moves it with
    φ ← φ - η (φ - θ̄), θ̄ the mean end point of the trajectories since the last outer update.

    Each inner step is one optimizer step, so Lightning's global_step counts inner steps; the outer
    update is a plain no-grad interpolation, not a second optimizer.
    """

    def __init__(
        self,
        inner_steps: int,
        outer_lr: float,
        reset_inner_optimizer: bool,
        outer_lr_final: float | None,
    ) -> None:
        if inner_steps < 1:
            raise ValueError(f"inner_steps (K) must be >= 1, got {inner_steps}")
        for name, value in (("outer_lr", outer_lr), ("outer_lr_final", outer_lr_final)):
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} (η) must be in (0, 1], got {value}")
        self.inner_steps = inner_steps
        self.outer_lr = outer_lr
        self.reset_inner_optimizer = reset_inner_optimizer
        self.outer_lr_final = outer_lr_final
        self._total_outer_updates: int | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.phi: list[torch.Tensor] | None = None
        self.endpoint_sum: list[torch.Tensor] | None = None
        self.k = 0  # inner steps taken in the current trajectory
        self.trajectories = 0  # trajectories finished since the last outer update
        self.outer_updates = 0
        self.at_phi = True  # parameters equal φ (right after an outer update, and at the start)

    def steps_per_outer_update(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def setup(self, module: TrainingModule) -> None:
        if self.outer_lr_final is not None:
            max_steps = module.trainer.max_steps
            if max_steps is None or max_steps < 0:
                raise ValueError("outer_lr_final (an annealed η) needs trainer.max_steps to be set")
            self._total_outer_updates = max(1, max_steps // self.steps_per_outer_update())
        if self.phi is not None:
            device = next(iter(module.trainable_parameters())).device
            self.phi = [p.to(device) for p in self.phi]
            if self.endpoint_sum is not None:
                self.endpoint_sum = [p.to(device) for p in self.endpoint_sum]

    def current_outer_lr(self) -> float:
        if self.outer_lr_final is None or self._total_outer_updates is None:
            return self.outer_lr
        frac = min(1.0, self.outer_updates / self._total_outer_updates)
        return self.outer_lr + frac * (self.outer_lr_final - self.outer_lr)

    @torch.no_grad()
    def start_trajectory(self, module: TrainingModule) -> None:
        """θ^(0) ← φ (φ is taken from the parameters the first time)."""
        params = module.trainable_parameters()
        if self.phi is None:
            self.phi = [p.detach().clone() for p in params]
        elif not self.at_phi:
            for p, phi in zip(params, self.phi):
                p.copy_(phi)
        if self.reset_inner_optimizer:
            module.reset_optimizer_state()
        self.at_phi = False

    @torch.no_grad()
    def end_trajectory(self, module: TrainingModule) -> None:
        """Adds θ_t^(K) to the running sum of this outer step's end points."""
        params = module.trainable_parameters()
        if self.endpoint_sum is None:
            self.endpoint_sum = [p.detach().clone() for p in params]
        else:
            for acc, p in zip(self.endpoint_sum, params):
                acc.add_(p)
        self.trajectories += 1
        self.k = 0

    @torch.no_grad()
    def outer_update(self, module: TrainingModule, endpoint: list[torch.Tensor]) -> None:
        """φ ← φ - η (φ - θ̄); the parameters are set to the new φ for the next trajectory."""
        assert self.phi is not None
        eta = self.current_outer_lr()
        for phi, theta, p in zip(self.phi, endpoint, module.trainable_parameters()):
            phi.add_(theta - phi, alpha=eta)
            p.copy_(phi)
        self.endpoint_sum = None
        self.trajectories = 0
        self.k = 0
        self.outer_updates += 1
        self.at_phi = True

    @contextmanager
    def evaluation_weights(self, module: TrainingModule) -> Iterator[None]:
        if self.at_phi or self.phi is None:
            yield
            return
        params = module.trainable_parameters()
        with torch.no_grad():
            theta = [p.detach().clone() for p in params]
            for p, phi in zip(params, self.phi):
                p.copy_(phi)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, t in zip(params, theta):
                    p.copy_(t)

    def state_dict(self) -> dict[str, Any]:
        return {
            "phi": self.phi,
            "endpoint_sum": self.endpoint_sum,
            "k": self.k,
            "trajectories": self.trajectories,
            "outer_updates": self.outer_updates,
            "at_phi": self.at_phi,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phi = state["phi"]
        self.endpoint_sum = state["endpoint_sum"]
        self.k = state["k"]
        self.trajectories = state["trajectories"]
        self.outer_updates = state["outer_updates"]
        self.at_phi = state["at_phi"]
