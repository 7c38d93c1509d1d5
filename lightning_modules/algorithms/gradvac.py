"""GradVac (Wang et al., ICLR 2021, "Gradient Vaccine"), with EMA targets kept per task pair by task name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch

from lightning_modules.algorithms.surgery_base import GradientAggregationAlgorithm

if TYPE_CHECKING:
    from lightning_modules.algorithms.protocol import TrainingModule

Granularity = Literal["whole_model", "per_layer", "per_parameter"]
GRANULARITIES = ("whole_model", "per_layer", "per_parameter")
Ranges = list[tuple[int, int]]  # [start, end) slices of the flat shared-parameter vector


def gradvac_weights(
    gramian: torch.Tensor, phi_hat: torch.Tensor, beta: float, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 of Wang et al. 2021 on the Gramian of each block: returns (weights, new φ̂).

    gramian [B, m, m] (or [m, m]): g_i · g_j within each of B parameter blocks; phi_hat: the EMA targets
    φ̂_ij of these m tasks, same shape. For each i and each j ≠ i in random order (one permutation per i,
    shared by the blocks):
        φ_ij = cos(g_i', g_j)        (g_i' the already-corrected g_i, g_j the original)
        if φ_ij < φ̂_ij:  g_i' += ||g_i'|| (φ̂_ij √(1-φ_ij²) − φ_ij √(1-φ̂_ij²)) / (||g_j|| √(1-φ̂_ij²)) g_j
        φ̂_ij ← (1-β) φ̂_ij + β φ_ij
    The update of each block is Σ_i g_i' = weights @ G (the sum, as MTL sums the losses). Writing
    g_i' = Σ_k C_ik g_k, every quantity needs only the Gramian, as in torchjd's GradVacWeighting, which
    this equals on one block (tests/test_gradvac.py). One difference: a pair whose cosine is undefined
    (a zero gradient) is left alone, neither corrected nor counted in the EMA.
    """
    squeeze = gramian.dim() == 2
    gram = (gramian.unsqueeze(0) if squeeze else gramian).detach().to("cpu", torch.float64)
    phi = (phi_hat.unsqueeze(0) if squeeze else phi_hat).detach().to("cpu", torch.float64).clone()
    if gram.shape != phi.shape or gram.shape[-1] != gram.shape[-2]:
        raise ValueError(f"gramian {tuple(gramian.shape)} and phi_hat {tuple(phi_hat.shape)} must be [B, m, m]")
    blocks, m, _ = gram.shape
    coef = torch.eye(m, dtype=torch.float64).repeat(blocks, 1, 1)  # g_i' = Σ_k coef[b, i, k] g_k
    norms_j = torch.diagonal(gram, dim1=-2, dim2=-1).clamp(min=0.0).sqrt()  # [B, m]
    for i in range(m):
        dots = torch.einsum("bk,bkl->bl", coef[:, i], gram)  # g_i' · g_l, [B, m]
        others = [j for j in range(m) if j != i]
        for j in (others[k] for k in torch.randperm(len(others)).tolist()):
            norm_i = (dots * coef[:, i]).sum(-1).clamp(min=0.0).sqrt()
            norm_j = norms_j[:, j]
            defined = (norm_i > 0) & (norm_j > 0)
            cos = dots[:, j] / (norm_i * norm_j + eps)
            target = phi[:, i, j]
            sqrt_cos = (1.0 - cos * cos).clamp(min=0.0).sqrt()
            sqrt_target = (1.0 - target * target).clamp(min=0.0).sqrt()
            w = norm_i * (target * sqrt_cos - cos * sqrt_target) / (norm_j * sqrt_target + eps)
            w = torch.where(defined & (cos < target), w, torch.zeros_like(w))
            coef[:, i, j] += w
            dots = dots + w[:, None] * gram[:, j]
            phi[:, i, j] = torch.where(defined, (1.0 - beta) * target + beta * cos, target)
    weights = coef.sum(dim=1)  # [B, m]
    return (weights[0], phi[0]) if squeeze else (weights, phi)


def layer_keys(names: list[str]) -> list[str]:
    """The layer of each parameter name: up to and including the first integer component (a layer of a
    ModuleList, `...encoder.layer.3`); other parameters go by their top-level module below the prefix
    all names share (`backbone.embeddings`, `backbone.pooler`)."""
    paths = [name.split(".")[:-1] for name in names]
    common = 0
    # the shared prefix stops one module short of every path, so each key names at least one module
    while paths and all(len(p) > common + 1 for p in paths) and len({p[common] for p in paths}) == 1:
        common += 1
    keys = []
    for name in names:
        parts = name.split(".")
        numbered = next((k for k, part in enumerate(parts) if part.isdigit()), None)
        keys.append(".".join(parts[: numbered + 1] if numbered is not None else parts[: common + 1]))
    return keys


def parameter_blocks(named_sizes: list[tuple[str, int]], granularity: str) -> tuple[list[str], list[Ranges]]:
    """(block names, [start, end) ranges of each block in the flat vector) for a granularity."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if not named_sizes:
        raise ValueError("GradVac needs shared parameters, but the model has none that require grad")
    names = [name for name, _ in named_sizes]
    if granularity == "whole_model":
        keys = ["whole_model"] * len(names)
    elif granularity == "per_parameter":
        keys = names
    else:
        keys = layer_keys(names)
    blocks: dict[str, Ranges] = {}
    offset = 0
    for key, (_, size) in zip(keys, named_sizes):
        ranges = blocks.setdefault(key, [])
        if ranges and ranges[-1][1] == offset:
            ranges[-1] = (ranges[-1][0], offset + size)
        else:
            ranges.append((offset, offset + size))
        offset += size
    return list(blocks), list(blocks.values())


def _gram(columns: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ik,jk->ij", columns, columns)


class GradVac(GradientAggregationAlgorithm):
    """Gradient Vaccine: raises the cosine of each task pair towards its EMA target φ̂_ij (see
    `gradvac_weights`); with φ̂ = 0 it is PCGrad. Shared parameters only; heads keep their plain gradient.

    φ̂ is a T×T matrix over *all* training tasks, indexed by task name: with m < T tasks per step the rows
    of G are different tasks every step, so the targets of the sampled tasks are gathered before each step
    and scattered back after (torchjd's GradVac keys them by row position, which would mix tasks up).
    Each parameter block (see `granularity`) is vaccinated separately, with its own φ̂; the update is the
    sum of the corrected gradients, on the scale of MTL's sum of losses.

    Args:
        tasks_per_step: m tasks drawn per step (paper §4.2: 8).
        q: task sampling exponent, p_t ∝ N_t^q (paper §4.2: 1/5).
        beta: EMA rate of φ̂; 1e-2 as in Wang et al. 2021 (torchjd and LibMTL default to 0.5).
        granularity: `whole_model` (one block), `per_layer` (blocks by `layer_keys`: each transformer
            layer, the embeddings, ...), or `per_parameter` (one block per shared tensor). Wang et al.
            compare such granularities; the Sequential Reptile paper does not say which it used.
        eps: added to denominators (zero gradients, φ̂ = ±1).
        seed: seeds the random order of the pairs (see GradientAggregationAlgorithm).
    """

    label = "GradVac"

    def __init__(
        self,
        tasks_per_step: int = 8,
        q: float = 0.2,
        beta: float = 0.01,
        granularity: Granularity = "whole_model",
        eps: float = 1e-8,
        seed: int = 0,
    ) -> None:
        super().__init__(tasks_per_step=tasks_per_step, q=q, seed=seed)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta (GradVac's EMA rate) must be in [0, 1], got {beta}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.beta = beta
        self.granularity = granularity
        self.eps = eps
        self._tasks: list[str] | None = None
        self._block_names: list[str] | None = None
        self._block_ranges: list[Ranges] | None = None
        self._phi_hat: torch.Tensor | None = None  # [blocks, T, T], float64 on CPU

    def setup(self, module: TrainingModule) -> None:
        named = [(n, p.numel()) for n, p in module.model.shared_named_parameters() if p.requires_grad]
        self.configure(list(module.task_names), named)

    def configure(self, tasks: list[str], named_sizes: list[tuple[str, int]]) -> None:
        """Fixes the task list and parameter blocks; keeps φ̂ loaded from a checkpoint if it fits them."""
        if not tasks:
            raise ValueError("GradVac needs at least one training task")
        block_names, block_ranges = parameter_blocks(named_sizes, self.granularity)
        if self._phi_hat is not None:
            if self._tasks != tasks:
                raise ValueError(f"GradVac state was saved for tasks {self._tasks}, but this run has {tasks}")
            if self._block_names != block_names:
                raise ValueError(
                    f"GradVac state was saved for parameter blocks {self._block_names}, but this model and "
                    f"granularity={self.granularity!r} give {block_names}"
                )
        else:
            self._phi_hat = torch.zeros(len(block_names), len(tasks), len(tasks), dtype=torch.float64)
        self._tasks, self._block_names, self._block_ranges = list(tasks), block_names, block_ranges

    @property
    def phi_hat(self) -> dict[str, torch.Tensor]:
        """The EMA targets, block name -> [T, T] (row/column order: the training tasks)."""
        if self._phi_hat is None or self._block_names is None:
            return {}
        return dict(zip(self._block_names, self._phi_hat.clone()))

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        if self._phi_hat is None or self._tasks is None or self._block_ranges is None:
            raise RuntimeError("GradVac.setup(module) (or configure) must run before the first step")
        unknown = [t for t in tasks if t not in self._tasks]
        if unknown:
            raise ValueError(f"task(s) {unknown} are not among GradVac's training tasks {self._tasks}")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"GradVac needs distinct tasks in a step, got {tasks}")
        total = sum(e - s for ranges in self._block_ranges for s, e in ranges)
        if jacobian.shape[1] != total:
            raise ValueError(f"task gradients have {jacobian.shape[1]} columns, the shared parameters {total}")
        index = torch.tensor([self._tasks.index(t) for t in tasks])
        rows, cols = index[:, None], index[None, :]
        # Per block, Gramian and update are sums over its column ranges (no copy of G's columns).
        gramian = torch.stack([sum(_gram(jacobian[:, s:e]) for s, e in ranges) for ranges in self._block_ranges])
        weights, phi = gradvac_weights(gramian, self._phi_hat[:, rows, cols], self.beta, self.eps)
        self._phi_hat[:, rows, cols] = phi
        weights = weights.to(jacobian)
        direction = torch.empty(jacobian.shape[1], dtype=jacobian.dtype, device=jacobian.device)
        for w, ranges in zip(weights, self._block_ranges):
            for s, e in ranges:
                direction[s:e] = torch.einsum("i,ik->k", w, jacobian[:, s:e])
        return direction

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._phi_hat is not None:
            state.update(
                tasks=list(self._tasks or []), blocks=list(self._block_names or []), phi_hat=self._phi_hat.clone()
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "phi_hat" not in state:
            return
        phi_hat = state["phi_hat"].to("cpu", torch.float64).clone()
        tasks, blocks = list(state["tasks"]), list(state["blocks"])
        if phi_hat.shape != (len(blocks), len(tasks), len(tasks)):
            raise ValueError(f"GradVac state: phi_hat {tuple(phi_hat.shape)} does not fit {blocks} x {tasks}")
        if self._tasks is not None and (self._tasks != tasks or self._block_names != blocks):
            raise ValueError(
                f"GradVac state was saved for tasks {tasks} and blocks {blocks}, "
                f"but this run has {self._tasks} and {self._block_names}"
            )
        self._tasks, self._block_names, self._phi_hat = tasks, blocks, phi_hat
