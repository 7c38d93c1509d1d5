"""The standard error of the mean task-gradient cosine over the choice of probe examples, in closed form.

The mean cosine f(G_1, ..., G_T) is a smooth function of the task gradients G_t, each the mean of n_t example
gradients g_t,i. To first order (the delta method, which the bootstrap over examples converges to as n
grows), Var f ≈ Σ_t Var_i(∇_t f · g_t,i) / n_t. ∇_t f is a combination of the G_b, so ∇_t f · g_t,i needs
only the inner products <G_b, g_t,i>: one example gradient at a time, never the [Σ n_t, D] matrix of all of
them, which for a BERT-sized model does not fit in memory (a bootstrap needs every pairwise product between
example gradients).
"""

from __future__ import annotations

import math

import torch


def cos_mean_influence(gram: torch.Tensor, products: torch.Tensor, task: int) -> torch.Tensor:
    """∇_t f · g_t,i for every example i of task `task`, f the mean over pairs a < b of cos(G_a, G_b).

    Args:
        gram: [T, T] inner products <G_a, G_b> of the task gradients.
        products: [n_t, T] inner products <G_b, g_t,i> of task t's example gradients with every task gradient.

    ∂cos(G_t, G_b)/∂G_t = G_b / (|G_t| |G_b|) − cos_tb G_t / |G_t|²; a zero gradient contributes nothing (its
    cosines are reported as 0 whatever the others do)."""
    gram, products = gram.double(), products.double()
    norms = gram.diagonal().clamp_min(0).sqrt()
    num_tasks = gram.shape[0]
    pairs = num_tasks * (num_tasks - 1) / 2
    if norms[task] == 0:
        return torch.zeros(products.shape[0], dtype=torch.float64)
    others = (torch.arange(num_tasks) != task) & (norms > 0)
    cos = gram[task] / (norms[task] * norms.clamp_min(torch.finfo(torch.float64).tiny))
    toward_others = products[:, others] @ (1.0 / (norms[task] * norms[others]))
    along_self = cos[others].sum() * products[:, task] / norms[task] ** 2
    return (toward_others - along_self) / pairs


def cos_mean_standard_error(gram: torch.Tensor, products: list[torch.Tensor]) -> float:
    """sqrt(Σ_t s_t² / n_t), s_t² the sample variance over task t's examples of ∇_t f · g_t,i: how much the mean
    cosine would move with another draw of probe examples of the same size. NaN if a task has fewer than 2."""
    if any(p.shape[0] < 2 for p in products):
        return math.nan
    variance = sum(float(cos_mean_influence(gram, p, t).var()) / p.shape[0] for t, p in enumerate(products))
    return math.sqrt(variance)
