"""Any torchjd aggregator (CAGrad, UPGrad, IMTL-G, MGDA, Aligned-MTL, Nash-MTL, ...) as an MTL-family
update rule: the aggregator turns the per-task gradient matrix into the shared parameters' gradient.

    algorithm:
      class_path: lightning_modules.algorithms.aggregator.Aggregator
      init_args:
        tasks_per_step: 8
        aggregator: {class_path: torchjd.aggregation.CAGrad, init_args: {c: 0.5}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torchjd import Stateful
from torchjd.aggregation import Aggregator as TorchJDAggregator

from lightning_modules.algorithms.surgery_base import GradientAggregationAlgorithm

if TYPE_CHECKING:
    from lightning_modules.algorithms.protocol import TrainingModule

_MODULE_INTERNALS = frozenset(vars(nn.Module()))


class Aggregator(GradientAggregationAlgorithm):
    """The shared gradient is `aggregator(G)`, G [m, D] the task gradients; heads keep their summed
    gradient. torchjd's `Sum` gives exactly MTL; `Mean` gives MTL's shared step divided by m.

    Rows are put in task-name order before aggregating, so a *stateful* aggregator (torchjd `Stateful`:
    Nash-MTL, GradVac, PCD, ...) sees task i in row i at every step. Such an aggregator keeps its state by
    row position, which names a task only when every step has every task: it needs tasks_per_step equal
    to the number of training tasks (for GradVac with fewer tasks per step use
    `lightning_modules.algorithms.gradvac.GradVac`, which keeps its state per task pair). What the
    aggregator's forward changed (its buffers and attributes) is saved in checkpoints, so resume is exact.

    Args:
        aggregator: a `torchjd.aggregation.Aggregator`, e.g. `CAGrad(c=0.5)`, `UPGrad()`, `IMTLG()`,
            `MGDA()`, `AlignedMTL()`, `NashMTL(n_tasks=...)`. Some need extras
            (`pip install "torchjd[cagrad,quadprog-projector,nash-mtl]"`).
        tasks_per_step: m tasks drawn per step (paper §4.2: 8).
        q: task sampling exponent, p_t ∝ N_t^q (paper §4.2: 1/5).
        seed: seeds the aggregator's CPU random draws, if any (see GradientAggregationAlgorithm).
    """

    label = "{aggregator}"

    def __init__(self, aggregator: TorchJDAggregator, tasks_per_step: int = 8, q: float = 0.2, seed: int = 0) -> None:
        super().__init__(tasks_per_step=tasks_per_step, q=q, seed=seed)
        if not isinstance(aggregator, TorchJDAggregator):
            raise TypeError(
                f"aggregator must be a torchjd.aggregation.Aggregator (e.g. torchjd.aggregation.CAGrad), "
                f"got {type(aggregator).__name__}"
            )
        self.aggregator = aggregator
        self._initial = _snapshot(aggregator)

    @property
    def stateful(self) -> bool:
        return any(isinstance(m, Stateful) for m in self.aggregator.modules())

    def setup(self, module: TrainingModule) -> None:
        n_tasks = len(module.task_names)
        if self.stateful and self.tasks_per_step != n_tasks:
            raise ValueError(
                f"{type(self.aggregator).__name__} keeps state by row position, so it needs every task at every "
                f"step: set tasks_per_step to the number of training tasks ({n_tasks}), not {self.tasks_per_step}"
                " (for GradVac use lightning_modules.algorithms.gradvac.GradVac, which keeps per-task-pair state)"
            )

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        order = sorted(range(len(tasks)), key=lambda i: tasks[i])
        return self.aggregator(jacobian[order])

    def state_dict(self) -> dict[str, Any]:
        """The random stream, plus the aggregator's buffers and the attributes its forward changed (not its
        hyperparameters, which stay those of the config)."""
        state = super().state_dict()
        if not self.stateful:
            return state
        changes: dict[str, Any] = {}
        for path, entries in _snapshot(self.aggregator).items():
            initial = self._initial.get(path, {})
            changed = {k: v for k, v in entries.items() if k not in initial or not _same(v, initial[k])}
            if changed:
                changes[path] = {k: _encode(v) for k, v in changed.items()}
        if changes:
            state["aggregator"] = changes
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        modules = dict(self.aggregator.named_modules())
        for path, entries in state.get("aggregator", {}).items():
            if path not in modules:
                raise ValueError(f"saved aggregator state has module '{path}', {self.aggregator!r} has none")
            sub = modules[path]
            unsaved = [k for k, v in entries.items() if isinstance(v, dict) and v.get("kind") == "unsaved"]
            if unsaved:
                raise ValueError(
                    f"cannot resume {type(self.aggregator).__name__} exactly: its state {unsaved} in '{path}' is "
                    "not made of tensors/numbers and was not saved; restart the run, or use another aggregator"
                )
            for name, value in entries.items():
                if name.startswith("buffer:"):
                    sub._buffers[name.removeprefix("buffer:")] = _decode(value)
                else:
                    object.__setattr__(sub, name, _decode(value))


def _snapshot(aggregator: nn.Module) -> dict[str, dict[str, Any]]:
    """Per submodule: its buffers (`buffer:<name>`, None included) and its own plain attributes."""
    snapshot: dict[str, dict[str, Any]] = {}
    for path, sub in aggregator.named_modules():
        entries = {f"buffer:{k}": _copy(v) for k, v in sub._buffers.items()}
        entries.update({k: _copy(v) for k, v in vars(sub).items() if k not in _MODULE_INTERNALS})
        snapshot[path] = entries
    return snapshot


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a is b or a == b)
    except Exception:  # objects without a usable ==
        return False


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.dtype)):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items()) and "kind" not in value
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


def _encode(value: Any) -> Any:
    """A value a weights_only checkpoint load accepts: tensors, numbers, strings, dtypes, lists, dicts."""
    if isinstance(value, np.ndarray):
        return {"kind": "ndarray", "value": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return {"kind": "npscalar", "value": torch.tensor(value.item()), "dtype": str(value.dtype)}
    if _plain(value):
        return value
    return {"kind": "unsaved", "type": type(value).__name__}


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "kind" in value:
        kind = value["kind"]
        if kind == "ndarray":
            return value["value"].numpy().copy()
        if kind == "npscalar":
            return np.dtype(value["dtype"]).type(value["value"].item())
    return value
