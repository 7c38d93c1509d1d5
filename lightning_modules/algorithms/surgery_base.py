"""What PCGrad, GradVac and the torchjd adapter share: one MTL-family step whose shared gradient is an
aggregation of the per-task gradient matrix G [m, D] instead of its plain sum."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from datamodules.schedule import IIDSchedule
from lightning_modules.algorithms.base import Algorithm
from lightning_modules.precision import full_precision
from lightning_modules.task_gradients import set_shared_gradient, split_parameters, task_jacobian

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule


class GradientAggregationAlgorithm(Algorithm):
    """m tasks per step drawn with p_t ∝ N_t^q (paper §4.2: m = 8, q = 1/5), like MTL; the shared
    parameters get `aggregate(G, tasks)`, the task-specific ones (heads) keep their summed gradient.

    Subclasses implement only `aggregate`; with the plain row sum it is exactly MTL.

    Random choices inside `aggregate` (PCGrad's and GradVac's visiting orders, drawn with the global
    `torch.randperm`) run on the algorithm's own CPU random stream, seeded by `seed` and saved in
    `state_dict`: the same on every DDP rank (each rank applies the direction it computes), untouched
    by dropout or anything else the model draws, and exact on resume.

    Under mixed precision `aggregate` runs outside autocast on float32 task gradients (its products would
    otherwise run in 16 bits). Under fp16 loss scaling a step whose gradients overflowed aggregates nothing (so
    neither the random stream nor an aggregator's state moves) and is skipped by the GradScaler.
    """

    def __init__(self, tasks_per_step: int = 8, q: float = 0.2, seed: int = 0) -> None:
        if tasks_per_step < 1:
            raise ValueError(f"tasks_per_step must be >= 1, got {tasks_per_step}")
        if q < 0:
            raise ValueError(f"task sampling exponent q must be >= 0, got {q}")
        self.tasks_per_step = tasks_per_step
        self.q = q
        self.seed = seed
        self._rng_state: torch.Tensor | None = None

    def schedule(self) -> IIDSchedule:
        return IIDSchedule(tasks_per_step=self.tasks_per_step, q=self.q)

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str]) -> torch.Tensor:  # pragma: no cover
        """One update direction [D] (to descend along) from the task gradients [m, D]; row i is `tasks[i]`."""
        raise NotImplementedError

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:
        tasks = [task for task, _ in batch]
        shared, specific = split_parameters(module)
        jacobian, losses, scale, finite = task_jacobian(module, batch, shared, specific)
        with full_precision(jacobian.device):
            if finite:
                with self.own_random_stream():
                    direction = self.aggregate(jacobian, tasks)
            else:  # an fp16 overflow: non-finite, so the GradScaler skips this step and lowers its scale
                direction = jacobian.sum(0)
        if direction.shape != jacobian.shape[1:]:
            raise RuntimeError(
                f"{type(self).__name__}.aggregate returned shape {tuple(direction.shape)}, "
                f"expected ({jacobian.shape[1]},): one vector over the shared parameters"
            )
        set_shared_gradient(shared, scale.rescale(direction.to(jacobian.dtype)))
        module.optimizer_step()
        module.emit("step", tasks)
        return losses.sum()

    @contextmanager
    def own_random_stream(self) -> Iterator[None]:
        """Runs the block with the global CPU generator switched to this algorithm's stream."""
        if self._rng_state is None:
            self._rng_state = torch.Generator().manual_seed(self.seed).get_state()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            yield
            self._rng_state = torch.get_rng_state()

    def state_dict(self) -> dict[str, Any]:
        return {} if self._rng_state is None else {"rng": self._rng_state.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rng") is not None:
            self._rng_state = state["rng"].clone()
