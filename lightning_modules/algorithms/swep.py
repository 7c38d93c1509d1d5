"""SWEP (Lee, Kang, Lee & Hwang, ACL 2021, "Learning to Perturb Word Embeddings for Out-of-distribution QA").

The extra baseline of the paper's zero-shot tables (Tables 4-5). A noise generator reads the encoder's last
hidden states (detached) and outputs, per token, the mean μ and log-variance log σ² of a Gaussian
multiplicative noise z ~ N(μ, diag(σ²)) (reparameterised: z = μ + σ·ε). The perturbed input replaces each
word embedding e by e ⊙ z (position and token-type embeddings are added afterwards, untouched). Each task's
loss is

    ½ (L(x) + L(x ⊙ z)) + β · KL(N(μ, σ²) ‖ N(1, v·I))

with the KL summed over the embedding dimensions and averaged over the non-padding tokens of the batch. The
model and the noise generator are trained jointly to *minimise* this loss (no adversarial max step): the
perturbation is learned to keep the task solvable, i.e. semantics-preserving, while the KL keeps it noisy.

Checked against the authors' code (github.com/seanie12/SWEP, models.py / run_squad.py):
- noise generator: Linear(H, H) → ReLU → Linear(H, 2E) (ELECTRA variant: dropout before the last layer);
  input: the encoder's last hidden states without gradient; PyTorch's default initialisation.
- prior N(1, v·I) with v = sqrt(p/(1−p)), p = 0.1 (BERT's hidden dropout), so v = 1/3 (`prior_variance`);
  β = 1 (`beta`, their script's default).
- one AdamW over the QA model and the generator, same lr and linear schedule, gradients clipped to norm 1.

Differences here, all documented choices:
- The generator reads the hidden states of the clean training forward (detached) instead of those of an
  extra no-grad forward with its own dropout mask: same input distribution, one forward less per step.
- The generator has its own AdamW (the Algorithm is not part of the model, and LightningCLI builds the inner
  optimizer from the model's parameters before the algorithm is set up). Its lr follows the inner optimizer's
  current lr every step unless `noise_lr` is given, so it shares the warmup/decay schedule as in the
  authors' single optimizer; its gradient is clipped with `grad_clip_norm` separately from the model's.
  Its weights and optimizer state are in the algorithm's state_dict (exact resume).
- Multi-task: each step draws `tasks_per_step` tasks (the MTL schedule, p_t ∝ N_t^q) and sums the per-task
  SWEP losses (one backward of the sum, as MTL; a step holds two forward graphs per task).

The hook needs no model change: a forward hook on the Hugging Face encoder's `get_input_embeddings()`
multiplies its output by z during the perturbed forward, and another on the encoder reads its last hidden
state during the clean forward.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lightning_modules.algorithms.mtl import MTL
from lightning_modules.errors import NonFiniteLossError

if TYPE_CHECKING:
    from datamodules.streams import MultiTaskBatch
    from lightning_modules.algorithms.protocol import TrainingModule

# The authors' prior variance: sqrt(p / (1 - p)) with p = 0.1, BERT's hidden dropout (models.py).
AUTHORS_PRIOR_VARIANCE = math.sqrt(0.1 / 0.9)


class NoiseGenerator(nn.Module):
    """hidden states [..., H] → (μ, log σ²), each [..., E]: Linear(H, H) → ReLU → Dropout → Linear(H, 2E)."""

    def __init__(self, hidden_size: int, embedding_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_size < 1 or embedding_size < 1:
            raise ValueError(f"sizes must be >= 1, got hidden {hidden_size}, embedding {embedding_size}")
        self.hidden_size, self.embedding_size = hidden_size, embedding_size
        self.net = nn.Sequential(
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(hidden_size, 2 * embedding_size),
        )

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.net(hidden).chunk(2, dim=-1)
        return mu, log_var


def sample_noise(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε, ε ~ N(0, I) from the global RNG (saved and restored by MultiTaskModule for exact resume)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)


def gaussian_kl(
    mu: torch.Tensor,
    log_var: torch.Tensor,
    prior_mean: float = 1.0,
    prior_variance: float = AUTHORS_PRIOR_VARIANCE,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(m, v)) per token, summed over the last dimension and averaged over the tokens where
    `mask` is true (all tokens without a mask): ½ Σ_d [log v − log σ² + (σ² + (μ − m)²)/v − 1]."""
    if prior_variance <= 0:
        raise ValueError(f"prior_variance must be > 0, got {prior_variance}")
    mu, log_var = mu.float(), log_var.float()
    per_dim = math.log(prior_variance) - log_var + (log_var.exp() + (mu - prior_mean) ** 2) / prior_variance - 1
    per_token = 0.5 * per_dim.sum(dim=-1)
    if mask is None:
        return per_token.mean()
    mask = mask.to(device=per_token.device, dtype=torch.bool)
    if mask.shape != per_token.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the tokens {tuple(per_token.shape)}")
    if not mask.any():
        raise ValueError("the mask selects no token (every token is padding)")
    return per_token[mask].mean()


@contextmanager
def multiply_embeddings(embedding: nn.Module, z: torch.Tensor) -> Iterator[None]:
    """While active, the output e of `embedding` (the word-embedding module) becomes e ⊙ z."""

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if output.shape != z.shape:
            raise ValueError(
                f"SWEP noise has shape {tuple(z.shape)} but the word embeddings {tuple(output.shape)}: the perturbed "
                "forward must see the same input_ids as the clean one"
            )
        return output * z.to(output.dtype)

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class _LastHidden:
    """Records the last hidden state of the first call of `encoder` while active."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.value is not None:
            return
        if isinstance(output, torch.Tensor):
            self.value = output
        elif getattr(output, "last_hidden_state", None) is not None:
            self.value = output.last_hidden_state
        else:
            self.value = output[0]


@contextmanager
def capture_last_hidden(encoder: nn.Module) -> Iterator[_LastHidden]:
    record = _LastHidden()
    handle = encoder.register_forward_hook(record.hook)
    try:
        yield record
    finally:
        handle.remove()


def find_encoder(model: nn.Module, path: str | None = None) -> nn.Module:
    """The Hugging Face base encoder inside a TaskModel: the module at `path`, or the first submodule with
    `get_input_embeddings` (its `base_model` when it is a task model such as BertForQuestionAnswering)."""
    if path is not None:
        modules = dict(model.named_modules())
        if path not in modules:
            raise ValueError(f"SWEP encoder_path '{path}' is not a submodule of {type(model).__name__}")
        found = modules[path]
        if not callable(getattr(found, "get_input_embeddings", None)):
            raise ValueError(f"SWEP encoder_path '{path}' ({type(found).__name__}) has no get_input_embeddings()")
    else:
        found = next((m for m in model.modules() if callable(getattr(m, "get_input_embeddings", None))), None)
        if found is None:
            raise ValueError(
                f"SWEP perturbs word embeddings, but {type(model).__name__} contains no Hugging Face encoder "
                "(no submodule with get_input_embeddings()); give encoder_path"
            )
    base = getattr(found, "base_model", None)
    return base if isinstance(base, nn.Module) else found


def _embedding_dim(embedding: nn.Module) -> int:
    dim = getattr(embedding, "embedding_dim", None)
    if dim is None:
        weight = getattr(embedding, "weight", None)
        if weight is None or weight.dim() != 2:
            raise ValueError(f"cannot tell the embedding size of {type(embedding).__name__}")
        dim = weight.shape[1]
    return int(dim)


def _inner_optimizer(module: TrainingModule) -> torch.optim.Optimizer:
    optimizers = module.optimizers()
    if isinstance(optimizers, (list, tuple)):
        if len(optimizers) != 1:
            raise ValueError(f"SWEP expects exactly one inner optimizer, got {len(optimizers)}")
        optimizers = optimizers[0]
    return getattr(optimizers, "optimizer", optimizers)


class SWEP(MTL):
    """MTL's schedule and summed task losses, each task's loss being SWEP's (see the module docstring).

    Args:
        tasks_per_step: m tasks per step (paper §4.3 on pseudo-tasks: all k = 4).
        q: task sampling exponent (irrelevant when every task is drawn each step).
        beta: weight β of the KL term (the authors' default 1).
        prior_variance: v of the prior N(1, v·I) (the authors' sqrt(0.1/0.9) = 1/3; 1 gives N(1, I)).
        noise_dropout: dropout inside the noise generator (the authors: 0 for BERT, 0.15 for ELECTRA).
        noise_lr: the generator's AdamW lr; None: the inner optimizer's current lr every step.
        noise_weight_decay: the generator's AdamW weight decay (the authors: 0).
        encoder_path: dotted name of the Hugging Face encoder in the model (default: found automatically).
    """

    label = "SWEP"

    def __init__(
        self,
        tasks_per_step: int = 8,
        q: float = 0.2,
        beta: float = 1.0,
        prior_variance: float = AUTHORS_PRIOR_VARIANCE,
        noise_dropout: float = 0.0,
        noise_lr: float | None = None,
        noise_weight_decay: float = 0.0,
        encoder_path: str | None = None,
    ) -> None:
        super().__init__(tasks_per_step=tasks_per_step, q=q)
        if beta < 0:
            raise ValueError(f"beta (the KL weight) must be >= 0, got {beta}")
        if prior_variance <= 0:
            raise ValueError(f"prior_variance must be > 0, got {prior_variance}")
        if not 0.0 <= noise_dropout < 1.0:
            raise ValueError(f"noise_dropout must be in [0, 1), got {noise_dropout}")
        if noise_lr is not None and noise_lr <= 0:
            raise ValueError(f"noise_lr must be > 0 (or null to follow the inner optimizer), got {noise_lr}")
        if noise_weight_decay < 0:
            raise ValueError(f"noise_weight_decay must be >= 0, got {noise_weight_decay}")
        self.beta = beta
        self.prior_variance = prior_variance
        self.noise_dropout = noise_dropout
        self.noise_lr = noise_lr
        self.noise_weight_decay = noise_weight_decay
        self.encoder_path = encoder_path
        self._noise: NoiseGenerator | None = None
        self._noise_optimizer: torch.optim.Optimizer | None = None
        self._encoder: nn.Module | None = None
        self._embedding: nn.Module | None = None
        self._pending: dict[str, Any] | None = None
        self.steps = 0

    # ------------------------------------------------------------------ setup
    @property
    def noise_generator(self) -> NoiseGenerator:
        if self._noise is None:
            raise RuntimeError("SWEP is not set up yet (MultiTaskModule calls setup at fit start)")
        return self._noise

    def setup(self, module: TrainingModule) -> None:
        self._encoder = find_encoder(module.model, self.encoder_path)
        self._embedding = self._encoder.get_input_embeddings()
        if self._embedding is None:
            raise ValueError(f"{type(self._encoder).__name__}.get_input_embeddings() returned None")
        _reject_loss_scaling(module)
        hidden = getattr(getattr(self._encoder, "config", None), "hidden_size", None)
        if hidden is None:
            raise ValueError(f"cannot tell the hidden size of {type(self._encoder).__name__} (no config.hidden_size)")
        embedding_dim = _embedding_dim(self._embedding)
        weight = next(self._embedding.parameters())
        if self._noise is None or (self._noise.hidden_size, self._noise.embedding_size) != (hidden, embedding_dim):
            noise = NoiseGenerator(int(hidden), embedding_dim, self.noise_dropout)
            self._noise = noise.to(device=weight.device, dtype=weight.dtype)
            self._noise_optimizer = torch.optim.AdamW(
                self._noise.parameters(), lr=self.noise_lr or 1e-3, weight_decay=self.noise_weight_decay
            )
            trainer = getattr(module, "_trainer", None)
            if trainer is not None and trainer.world_size > 1:  # the same initial generator on every rank
                self._noise.load_state_dict(trainer.strategy.broadcast(self._noise.state_dict(), src=0))
        else:
            self._noise.to(device=weight.device)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._load_now(pending)

    # --------------------------------------------------------------- training
    def perturbed_losses(self, module: TrainingModule, task: str, batch: Any) -> dict[str, torch.Tensor]:
        """The clean loss (via module.task_loss), the perturbed loss, the KL and SWEP's loss for one task."""
        assert self._noise is not None and self._encoder is not None and self._embedding is not None
        with capture_last_hidden(self._encoder) as record:
            clean = module.task_loss(task, batch)
        if record.value is None:
            raise RuntimeError(f"task '{task}': the model's forward did not call its encoder {type(self._encoder)}")
        hidden = record.value.detach()
        self._noise.train()
        mu, log_var = self._noise(hidden)
        z = sample_noise(mu, log_var)
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is not None and tuple(mask.shape) != tuple(hidden.shape[:2]):
            raise ValueError(
                f"task '{task}': attention_mask {tuple(mask.shape)} does not match the hidden states "
                f"{tuple(hidden.shape[:2])}"
            )
        kl = gaussian_kl(mu, log_var, 1.0, self.prior_variance, mask)
        with multiply_embeddings(self._embedding, z):
            perturbed = module.model(task, batch).loss
        loss = 0.5 * (clean + perturbed) + self.beta * kl
        if not torch.isfinite(loss):  # before any backward: the parameters stay untouched
            raise NonFiniteLossError(
                f"non-finite SWEP loss on task '{task}': perturbed loss {perturbed.item()}, KL {kl.item()}"
            )
        return {"clean": clean, "perturbed": perturbed, "kl": kl, "loss": loss}

    def backward(self, module: TrainingModule, batch: MultiTaskBatch) -> dict[str, torch.Tensor]:
        """Gradients of Σ_t SWEP loss_t into the model's and the generator's .grad, in one backward (DDP's
        reducer allows one backward per training step); returns the detached sums of each part."""
        if self._noise is None:
            self.setup(module)
        parts = [self.perturbed_losses(module, task, data) for task, data in batch]
        total = torch.stack([p["loss"] for p in parts]).sum()
        module.manual_backward(total)
        return {name: torch.stack([p[name].detach() for p in parts]).sum() for name in parts[0]}

    def training_step(self, module: TrainingModule, batch: MultiTaskBatch) -> torch.Tensor:
        inner = _inner_optimizer(module)
        lr = self.noise_lr if self.noise_lr is not None else float(inner.param_groups[0]["lr"])  # before its step
        totals = self.backward(module, batch)
        self._noise_step(module, lr)
        module.optimizer_step()
        self.steps += 1
        n = len(batch)
        for name in ("perturbed", "kl"):
            module.log(f"swep/{name}", totals[name] / n, on_step=True, on_epoch=False, batch_size=1)
        module.emit("step", [task for task, _ in batch])
        return totals["loss"]

    def _noise_step(self, module: TrainingModule, lr: float) -> None:
        assert self._noise is not None and self._noise_optimizer is not None
        params = [p for p in self._noise.parameters() if p.grad is not None]
        if params:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            flat = module.all_reduce_mean(flat)  # the generator is outside DDP: average its gradient by hand
            offset = 0
            for p in params:
                n = p.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p))
                offset += n
            clip = getattr(module, "grad_clip_norm", None)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
        for group in self._noise_optimizer.param_groups:
            group["lr"] = lr
        self._noise_optimizer.step()
        self._noise_optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        if self._noise is None or self._noise_optimizer is None:
            return dict(self._pending) if self._pending is not None else {"steps": self.steps}
        return {
            "steps": self.steps,
            "sizes": [self._noise.hidden_size, self._noise.embedding_size],
            "noise_generator": {k: v.detach().clone() for k, v in self._noise.state_dict().items()},
            "noise_optimizer": copy.deepcopy(self._noise_optimizer.state_dict()),  # not the live moment tensors
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Before setup (Lightning restores checkpoints before fit start) the state waits for setup."""
        if not state:
            return
        self.steps = int(state.get("steps", 0))
        if "noise_generator" not in state:
            return
        if self._noise is None:
            self._pending = dict(state)
        else:
            self._load_now(state)

    def _load_now(self, state: dict[str, Any]) -> None:
        assert self._noise is not None and self._noise_optimizer is not None
        sizes = [self._noise.hidden_size, self._noise.embedding_size]
        if list(state["sizes"]) != sizes:
            raise ValueError(
                f"the saved SWEP noise generator has (hidden, embedding) sizes {list(state['sizes'])}, "
                f"this model {sizes}"
            )
        self._noise.load_state_dict(state["noise_generator"])
        self._noise_optimizer.load_state_dict(state["noise_optimizer"])
        self.steps = int(state.get("steps", 0))


def _reject_loss_scaling(module: TrainingModule) -> None:
    """fp16 loss scaling would scale the generator's gradient too, and its optimizer is not the scaler's."""
    trainer = getattr(module, "_trainer", None)
    plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
    if getattr(plugin, "scaler", None) is not None:
        raise ValueError(
            "SWEP's noise generator has its own optimizer, which fp16 loss scaling (precision 16-mixed) does not "
            "unscale; use precision bf16-mixed or 32"
        )
