"""L2 drift from the pretrained weights: how far finetuning moves the shared encoder (paper §4.2, Fig. 6)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from callbacks.periodic import PeriodicMeasurement


class L2Drift(PeriodicMeasurement):
    """||θ − θ_pretrained||₂ over the parameters named in `model.pretrained_reference()`, at the algorithm's
    evaluation weights (φ for the Reptile family), at the start of training and every `every_n_steps`
    optimizer steps.

    Logged as `drift/l2` through the logger at `trainer.global_step`, and appended to `<log_dir>/drift.csv`
    (`step,l2`; on resume, rows after the resumed step are dropped). The reference is reloaded from its
    pretrained source at fit start (it is not stored in checkpoints) and held on the model's device in the
    weights' dtype (what `trainer.precision` made of the pretrained weights is where the run starts, so the
    drift at step 0 is 0 under every precision); the distance is accumulated in float64.

    Args:
        every_n_steps: interval in optimizer steps (the cost is one pass over the weights).
        filename: the CSV's name inside the logger's directory.
    """

    def __init__(self, every_n_steps: int = 100, filename: str = "drift.csv") -> None:
        super().__init__(every_n_steps, filename, ["step", "l2"])
        self.reference: dict[str, torch.Tensor] = {}
        self.last_value: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        model = pl_module.model
        reference = model.pretrained_reference()
        if not reference:
            raise ValueError(
                f"L2Drift: {type(model).__name__}.pretrained_reference() is empty; the model has no pretrained "
                "weights to measure drift from"
            )
        params = dict(model.named_parameters())
        unknown = sorted(set(reference) - set(params))
        if unknown:
            raise ValueError(f"L2Drift: pretrained_reference() names parameters the model lacks: {unknown[:5]}")
        for name, value in reference.items():
            if value.shape != params[name].shape:
                raise ValueError(
                    f"L2Drift: reference '{name}' has shape {tuple(value.shape)}, "
                    f"the model's {tuple(params[name].shape)}"
                )
        self.reference = {
            name: value.to(device=params[name].device, dtype=params[name].dtype) for name, value in reference.items()
        }

    @torch.no_grad()
    def distance(self, pl_module: pl.LightningModule) -> float:
        """||θ − θ_pretrained||₂ at the evaluation weights (accumulated in float64)."""
        with pl_module.algorithm.evaluation_weights(pl_module):
            params = dict(pl_module.model.named_parameters())
            total = torch.zeros((), dtype=torch.float64, device=pl_module.device)
            for name, ref in self.reference.items():
                total += (params[name].double() - ref.double()).pow(2).sum()
        return float(total.sqrt())

    def _measure_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        value = self.distance(pl_module)
        self.last_value = value
        for logger in trainer.loggers:
            logger.log_metrics({"drift/l2": value}, step=step)
        self.csv.append([[step, repr(value)]])
