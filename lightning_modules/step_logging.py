"""Per-step training values, handed to Lightning only at the steps whose logs it writes.

`LightningModule.log` costs about a millisecond per call on a CPU (it moves the value's result object to the
value's device on every call) and, for a progress-bar value, reads the tensor back to the host: one sync per step
on an accelerator. A training step logs one value per task and algorithm diagnostics besides, so the module keeps
the latest value of each key since the last write and hands them to Lightning when it writes logs (every
`trainer.log_every_n_steps` steps, when the run is told to stop, and at the last batch of an epoch or of the run).
Lightning writes the latest value of every key logged so far in the epoch, so the logger receives exactly what it
received with a `log` call per step: the same tags, steps and values (a task not drawn at a logging step shows its
latest loss, as Lightning always did). `trainer.callback_metrics` and the progress bar show the values of the last
logged step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def deferrable(fx: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a `log` call is a per-step training value (on_step, not on_epoch, from `training_step`)."""
    return (
        fx == "training_step"
        and not args
        and kwargs.get("on_step") in (None, True)
        and kwargs.get("on_epoch") in (None, False)
    )


class StepLog:
    """The latest value of each deferred key since the last write (a tensor stays on its device, detached)."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[Any, dict[str, Any]]] = {}

    def defer(self, name: str, value: Any, kwargs: dict[str, Any]) -> None:
        self.pending[name] = (value.detach() if isinstance(value, torch.Tensor) else value, kwargs)

    def clear(self) -> None:
        self.pending = {}

    def flush(self, log: Callable[..., None]) -> None:
        """Logs every pending value through `log` (Lightning's), then forgets them."""
        pending, self.pending = self.pending, {}
        for name, (value, kwargs) in pending.items():
            log(name, value, **kwargs)


def logs_due(trainer: Any) -> bool:
    """Lightning's own decision to write this batch's logs, or the last batch of an epoch or of the run (so that
    `callback_metrics` holds the final values)."""
    connector = getattr(trainer, "_logger_connector", None)
    due = bool(connector.should_update_logs) if connector is not None else True
    last_step = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
    return due or last_step or bool(trainer.is_last_batch)
