"""Pearson, Spearman and Matthews correlation with scipy's / scikit-learn's answers in the degenerate cases.

GLUE scores STS-B with `scipy.stats.pearsonr` / `spearmanr` and CoLA with `sklearn.metrics.matthews_corrcoef`.
Where a correlation is undefined they disagree on purpose, and these metrics follow each reference:

- Pearson and Spearman are NaN when the predictions or the targets are constant (or fewer than two pairs, or a
  NaN among them), as scipy returns. A score of 0 there would read as "uncorrelated"; NaN says "undefined".
  torchmetrics' Spearman returns 0 for constant input, and its Pearson, from running moments, can return a finite
  value for a constant input whose running mean is not exact.
- Matthews correlation is 0 when any marginal of the confusion matrix is empty (every prediction, or every
  target, in one class), as scikit-learn returns; torchmetrics returns 1 or a nonzero value there.

A NaN score is reported as NaN, never replaced: the average over tasks that includes it (`val/avg/pearson`) is
NaN too, `ModelCheckpoint` ranks a NaN monitor value as the worst, and `EarlyStopping` (`check_finite=True`)
stops on it.

Pearson and Spearman keep every pair (STS-B's dev set is 1,500 pairs) and compute in float64 from all of them,
two-pass; under DDP the pairs are gathered (`cat`). Matthews correlation keeps the 2 x 2 confusion matrix (`sum`).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.classification import BinaryMatthewsCorrCoef
from torchmetrics.utilities.data import dim_zero_cat

NAN = float("nan")


def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson's r in float64; NaN (scipy's answer) for fewer than two pairs, a constant side or a NaN."""
    x, y = x.double().flatten(), y.double().flatten()
    if x.numel() < 2 or bool(torch.isnan(x).any() | torch.isnan(y).any()):
        return torch.tensor(NAN, dtype=torch.float64)
    if bool((x == x[0]).all()) or bool((y == y[0]).all()):
        return torch.tensor(NAN, dtype=torch.float64)
    dx, dy = x - x.mean(), y - y.mean()
    dx, dy = dx / dx.abs().max(), dy / dy.abs().max()  # scaled as scipy does, against overflow
    return ((dx * dy).sum() / (dx.norm() * dy.norm())).clamp(-1.0, 1.0)


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties sharing their average rank (scipy.stats.rankdata's default)."""
    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # the highest rank of each distinct value
    return (last - (counts.double() - 1) / 2)[inverse]


def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's rho: Pearson's r of the average ranks; NaN where scipy gives NaN (see `pearson`)."""
    x, y = x.double().flatten(), y.double().flatten()
    if bool(torch.isnan(x).any() | torch.isnan(y).any()):
        return torch.tensor(NAN, dtype=torch.float64)
    return pearson(average_ranks(x), average_ranks(y))


def matthews(confmat: torch.Tensor) -> torch.Tensor:
    """MCC of a binary confusion matrix in float64; 0 when a marginal is empty (scikit-learn's answer)."""
    (tn, fp), (fn, tp) = confmat.double().tolist()
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    if denominator == 0:
        return torch.tensor(0.0, dtype=torch.float64)
    return torch.tensor((tp * tn - fp * fn) / denominator**0.5, dtype=torch.float64)


def regression_scores(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores [N] or [N, 1] and targets [N] -> float64 [N] pairs (bf16 / fp16 head outputs widened)."""
    if preds.dim() == 2 and preds.shape[-1] == 1:
        preds = preds.squeeze(-1)
    if preds.dim() != 1 or preds.shape != target.shape:
        raise ValueError(f"regression preds must be [N] or [N, 1] for targets [N]; got {tuple(preds.shape)}")
    return preds.detach().double(), target.detach().double()


class PairCorrelation(Metric):
    """A correlation of all (prediction, target) pairs seen, computed once in float64 (subclasses: which one)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = regression_scores(preds, target)
        self.preds.append(preds)
        self.target.append(target)

    def _pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.preds, list) and not self.preds:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        return dim_zero_cat(self.preds), dim_zero_cat(self.target)


class PearsonCorrelation(PairCorrelation):
    """Pearson's r (STS-B) from scores [N] or [N, 1]; NaN where scipy.stats.pearsonr gives NaN."""

    def compute(self) -> torch.Tensor:
        return pearson(*self._pairs()).float()


class SpearmanCorrelation(PairCorrelation):
    """Spearman's rho (STS-B; ties get average ranks) from scores [N] or [N, 1]; NaN where scipy gives NaN."""

    def compute(self) -> torch.Tensor:
        return spearman(*self._pairs()).float()


class MatthewsCorrelation(BinaryMatthewsCorrCoef):
    """Matthews correlation (CoLA) from class ids [N]; 0 where scikit-learn's matthews_corrcoef gives 0."""

    def compute(self) -> torch.Tensor:
        return matthews(self.confmat).float()
