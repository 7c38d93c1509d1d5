"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning"), on the shared parameters."""

from __future__ import annotations

import torch
from torchjd.aggregation import PCGrad as _TorchJDPCGrad

from lightning_modules.algorithms.surgery_base import GradientAggregationAlgorithm


class PCGrad(GradientAggregationAlgorithm):
    """Algorithm 1 of Yu et al.: for each task i, for the other tasks j in random order, if g_i^PC · g_j < 0,
    g_i^PC ← g_i^PC − (g_i^PC · g_j / ||g_j||²) g_j (projection onto the normal plane of the *original* g_j);
    the update is Σ_i g_i^PC.

    The sum (not the mean) keeps the step on the scale of MTL, whose objective is the sum of the m task
    losses: with no conflict PCGrad makes exactly the MTL step. Only the shared parameters are projected;
    the heads keep their plain gradient.

    `torchjd.aggregation.PCGrad` computes exactly this (in Gramian form; tests/test_pcgrad.py checks it
    against the paper's algorithm). Its random order comes from `torch.randperm`, which during a training
    step draws from the algorithm's own stream (`seed`; see GradientAggregationAlgorithm).

    Args:
        tasks_per_step: m tasks drawn per step (paper §4.2: 8).
        q: task sampling exponent, p_t ∝ N_t^q (paper §4.2: 1/5).
        seed: seeds the random projection order.
    """

    label = "PCGrad"

    def __init__(self, tasks_per_step: int = 8, q: float = 0.2, seed: int = 0) -> None:
        super().__init__(tasks_per_step=tasks_per_step, q=q, seed=seed)
        self._pcgrad = _TorchJDPCGrad()

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        return self._pcgrad(jacobian)
