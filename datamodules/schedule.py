"""Task schedules: which task(s) each optimizer step trains on.

The algorithm chooses the *kind* of schedule (its `ScheduleSpec`); the data side turns it into a
`TaskSampler` with its own seeded generator, so the task order is identical on every DDP rank and its
position can be saved in a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def task_probabilities(sizes: list[int], q: float) -> torch.Tensor:
    """p_t ∝ N_t^q (paper §3.1 and §4.2; q = 1/5 following Wang et al. 2021)."""
    if q < 0:
        raise ValueError(f"task sampling exponent q must be >= 0, got {q}")
    if not sizes:
        raise ValueError("task sampling needs at least one task")
    if any(n <= 0 for n in sizes):
        raise ValueError(f"every task needs at least one training example, got sizes {sizes}")
    weights = torch.tensor(sizes, dtype=torch.float64) ** q
    return weights / weights.sum()


@dataclass(frozen=True)
class IIDSchedule:
    """Each step draws `tasks_per_step` distinct tasks with p_t ∝ N_t^q (MTL family; m = 1: Sequential Reptile)."""

    tasks_per_step: int = 1
    q: float = 0.2


@dataclass(frozen=True)
class BlockSchedule:
    """Reptile: every task in turn (seeded order per round) for `steps_per_task` consecutive steps."""

    steps_per_task: int


ScheduleSpec = IIDSchedule | BlockSchedule


class TaskSampler:
    """Realises a `ScheduleSpec` over named tasks; deterministic given the seed, resumable via state_dict."""

    def __init__(self, spec: ScheduleSpec, task_names: list[str], task_sizes: list[int], seed: int) -> None:
        if not task_names:
            raise ValueError("the task list is empty")
        self.spec = spec
        self.task_names = list(task_names)
        self.generator = torch.Generator().manual_seed(seed)
        self._round: list[int] = []  # BlockSchedule: remaining task indices of the current round
        self._block_left = 0
        if isinstance(spec, IIDSchedule):
            if spec.tasks_per_step < 1:
                raise ValueError(f"tasks_per_step must be >= 1, got {spec.tasks_per_step}")
            if spec.tasks_per_step > len(task_names):
                raise ValueError(
                    f"tasks_per_step={spec.tasks_per_step} is larger than the number of tasks "
                    f"({len(task_names)}: {', '.join(task_names)})"
                )
            self.probabilities = task_probabilities(task_sizes, spec.q)
        elif isinstance(spec, BlockSchedule):
            if spec.steps_per_task < 1:
                raise ValueError(f"steps_per_task must be >= 1, got {spec.steps_per_task}")
        else:
            raise TypeError(f"unknown schedule {spec!r}")

    def next_tasks(self) -> list[str]:
        spec = self.spec
        if isinstance(spec, IIDSchedule):
            picked = torch.multinomial(
                self.probabilities, spec.tasks_per_step, replacement=False, generator=self.generator
            )
            return [self.task_names[i] for i in picked.tolist()]
        if self._block_left == 0:
            if not self._round:
                self._round = torch.randperm(len(self.task_names), generator=self.generator).tolist()
            self._current = self._round.pop(0)
            self._block_left = spec.steps_per_task
        self._block_left -= 1
        return [self.task_names[self._current]]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"generator": self.generator.get_state(), "tasks": self.task_names}
        if isinstance(self.spec, BlockSchedule):
            state.update(round=list(self._round), block_left=self._block_left, current=getattr(self, "_current", None))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["tasks"] != self.task_names:
            raise ValueError(f"schedule was saved for tasks {state['tasks']}, but this run has {self.task_names}")
        self.generator.set_state(state["generator"])
        if isinstance(self.spec, BlockSchedule):
            self._round = list(state["round"])
            self._block_left = state["block_left"]
            if state["current"] is not None:
                self._current = state["current"]
