"""Every method of configs/synthetic trains under every precision Lightning offers, with the update of the
32-true run of the same config: 64-true, bf16-mixed and 16-mixed (a real GradScaler through Lightning's precision
plugin) within each precision's tolerance; an fp16 overflow skips the step and lowers the scale; clipping sees
unscaled gradients; half-precision weights (bf16-true, 16-true) are refused for training.

The landscape's loss runs in float32 under autocast (no matrix product in it), so its update under mixed
precision must match float32 to float32 rounding: combining the task gradients in 16 bits (PCGrad, GradVac,
GradNorm, torchjd) is off by about 1e-3. The model with heads (linear layers, computed in 16 bits under autocast)
checks the heads' gradients and the fp16 scaling of the autograd.grad path, to the 16-bit tolerance. The tiny
encoder (the real `EncoderClassifier`: a 2-layer BERT with a head per task) checks the same through a transformer
under autocast (attention, layer norms and embeddings in mixed dtypes).
"""

from __future__ import annotations

import copy
import inspect
from functools import cache
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from lightning_modules.algorithms import registry
from lightning_modules.algorithms.reptile_base import ReptileFamily
from lightning_modules.models.base import TaskModel, TaskOutput
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.multitask import MultiTaskModule
from lightning_modules.performance import compile_encoder
from lightning_modules.precision import LossScale, full_precision
from tests.helpers import run_cli
from tests.schema_fixtures import tiny_bert_config

METHODS = registry.methods("synthetic")
STEPS = 6
# Shorter than the configs' so that a few steps reach what matters: the Reptile family's outer update (after
# inner_steps x 3 tasks for Reptile) and RecAdam's λ(t) away from 0 (its sigmoid's midpoint t0).
SHORT_ARGS = {"inner_steps": 2, "anneal_t0": 2}
# The model with heads: 2 steps (later, PCGrad's conflict test can flip between precisions near a zero inner product)
# at a loss scale under which its fp16 backward does not overflow (the overflow is tested on its own).
HEADS_RUN = (2, 2.0**10)
# Relative error of the update ||Δ - Δ_32|| / ||Δ_32|| allowed, for (model, precision).
TOLERANCE = {
    ("landscape", "64-true"): 1e-4,
    ("landscape", "bf16-mixed"): 1e-5,
    ("landscape", "16-mixed"): 1e-5,
    ("heads", "64-true"): 1e-4,
    ("heads", "bf16-mixed"): 2e-2,  # bf16 keeps 8 significant bits
    ("heads", "16-mixed"): 4e-3,  # fp16 keeps 11
    # measured on every method: at most 1e-6, 2.9e-3 and 3.2e-4; bf16's unit roundoff is 3.9e-3, fp16's 4.9e-4
    ("encoder", "64-true"): 1e-5,
    ("encoder", "bf16-mixed"): 1e-2,
    ("encoder", "16-mixed"): 2e-3,
}
# The tiny encoder's inputs: token ids from 5 (past the special tokens) below VOCAB, SEQ tokens, 3 labels.
VOCAB, SEQ = 40, 8


class TinyHeads(TaskModel):
    """x(index) -> tanh(shared Linear(3, 4)) -> per-task Linear(4, 1), squared error to a per-task target. Small
    seeded weights, so that no tanh saturates (a gradient exactly 0 in float32 but not in float64 flips PCGrad)."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.shared = nn.Linear(3, 4)
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in tasks})
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        self.targets = {t: 0.5 * (k + 1) * (-1) ** k for k, t in enumerate(tasks)}
        self.reference = {f"shared.{n}": p.detach().clone() for n, p in self.shared.named_parameters()}

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"shared.{n}", p) for n, p in self.shared.named_parameters()]

    def pretrained_reference(self) -> dict[str, torch.Tensor]:
        return self.reference

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        i = batch["index"].to(self.shared.weight.dtype) / 7.0
        x = torch.stack([torch.sin(i), torch.cos(i), torch.ones_like(i)], dim=1)
        out = self.heads[task](torch.tanh(self.shared(x))).squeeze(-1)
        return TaskOutput(loss=((out - self.targets[task]) ** 2).mean())


class TinyEncoder(EncoderClassifier):
    """A 2-layer BERT of hidden size 16 without dropout (so that every precision sees the same computation), a
    head per task; each example's token ids and label are a function of its index."""

    def __init__(self, tasks: list[str]) -> None:
        config = {**tiny_bert_config(VOCAB, max_positions=SEQ), "hidden_dropout_prob": 0.0}
        config["attention_probs_dropout_prob"] = 0.0
        with torch.random.fork_rng():
            torch.manual_seed(0)
            super().__init__(config=config, num_labels=3, head="per_task", tasks=tasks, dropout=0.0)

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        i = batch["index"].long()
        ids = (i[:, None] * 7 + torch.arange(SEQ)) % (VOCAB - 5) + 5
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": i % 3}
        return super().forward(task, inputs)


class StateAtStart(Callback):
    """The parameters and the algorithm's state when training starts (after the algorithm's setup)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: MultiTaskModule) -> None:
        self.parameters = [p.detach().clone() for p in pl_module.trainable_parameters()]
        self.state = copy.deepcopy(pl_module.algorithm.state_dict())


def short_args(method: registry.Method) -> list[str]:
    names = inspect.signature(method.algorithm).parameters
    return [f"--model.algorithm.init_args.{k}={v}" for k, v in SHORT_ARGS.items() if k in names]


@cache
def instantiated(key: str, root: Path) -> tuple[Any, ...]:
    """The module, data module and optimizer of a method's synthetic config (shortened), as `train.py fit` would
    build them (parsed once: the CLI's parsing costs several times the few steps)."""
    method = next(m for m in METHODS if m.key == key)
    cli = run_cli(["--config", str(method.config), *short_args(method)], root, subcommand=None)
    optimizer = cli.model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Optimizer)
    return cli.model, cli.datamodule, optimizer


def fit(
    key: str,
    precision: str,
    root: Path,
    model: str = "landscape",
    steps: int = STEPS,
    init_scale: float = 2.0**16,
    clip: float | None = None,
    callbacks: tuple[Callback, ...] = (),
    compile: bool = False,
) -> pl.Trainer:
    """`steps` training steps of a fresh copy of `instantiated(key)` under `precision`, with `grad_clip_norm`
    `clip` (`compile`: the encoder under torch.compile, as `performance.compile` does it); 16-mixed through
    Lightning's MixedPrecision plugin with a real GradScaler (Trainer(precision="16-mixed") turns into bf16-mixed
    on CPU)."""
    module, data, optimizer = copy.deepcopy(instantiated(key, root))  # the optimizer keeps the copy's params
    module.grad_clip_norm = clip
    if model == "heads":
        module.model = TinyHeads(list(data.task_names))
        optimizer = type(optimizer)(module.parameters(), **optimizer.defaults)
    elif model == "encoder":
        # Adam's first step is lr·sign(g), so an element whose gradient is rounding noise (the attention key bias,
        # whose exact gradient is 0) moves by ±lr in any precision: SGD, or for RecAdam (which needs Adam) ε = 1,
        # far above every gradient, which makes Adam's step nearly linear in the gradient.
        module.model = TinyEncoder(list(data.task_names))
        if compile:
            compile_encoder(module.model)
        adam = isinstance(optimizer, torch.optim.Adam)
        optimizer = (
            torch.optim.Adam(module.parameters(), lr=0.1, eps=1.0)
            if adam
            else torch.optim.SGD(module.parameters(), lr=0.1)
        )
    module.configure_optimizers = lambda: optimizer
    plugins: list[Any] = []
    flags: dict[str, Any] = {"precision": precision}
    if precision == "16-mixed":
        plugins, flags = [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale))], {}
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=root, plugins=plugins, callbacks=list(callbacks), **flags,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return trainer


def flat(parameters: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().double().reshape(-1) for p in parameters])


@cache
def update(key: str, precision: str, model: str, clip: float | None, root: Path) -> torch.Tensor:
    """The change of all trainable parameters over the run, in float64 (under 16-mixed no step may be skipped)."""
    start = StateAtStart()
    steps, init_scale = (STEPS, 2.0**16) if model == "landscape" else HEADS_RUN  # the encoder runs as the heads
    trainer = fit(key, precision, root, model, steps, init_scale, clip, callbacks=(start,))
    if precision == "16-mixed":
        assert trainer.precision_plugin.scaler.get_scale() >= init_scale, "a step overflowed: nothing to compare"
    return flat(trainer.lightning_module.trainable_parameters()) - flat(start.parameters)


def assert_same_update(key: str, precision: str, model: str, root: Path, clip: float | None = None) -> None:
    reference = update(key, "32-true", model, clip, root)
    result = update(key, precision, model, clip, root)
    assert reference.norm() > 0, "the reference run did not move"
    error = float((result - reference).norm() / reference.norm())
    assert error <= TOLERANCE[model, precision], f"{key} under {precision}: update off by {error:.2e} (relative)"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("precision")


@pytest.mark.parametrize("precision", ["64-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("key", [m.key for m in METHODS])
def test_landscape_update_matches_float32(key: str, precision: str, root: Path) -> None:
    assert_same_update(key, precision, "landscape", root)


@pytest.mark.parametrize("key", [m.key for m in METHODS])
def test_clipping_sees_unscaled_fp16_gradients(key: str, root: Path) -> None:
    """A clip norm below the gradients' norm: clipping the still-scaled gradients would make the step 2^16
    times too small."""
    assert_same_update(key, "16-mixed", "landscape", root, clip=0.5)


@pytest.mark.parametrize(
    "precision",
    [pytest.param("64-true", marks=pytest.mark.slow), pytest.param("bf16-mixed", marks=pytest.mark.slow), "16-mixed"],
)
@pytest.mark.parametrize("key", [m.key for m in METHODS])
@pytest.mark.parametrize("model", ["heads", "encoder"])
def test_model_with_heads_update_matches_float32(model: str, key: str, precision: str, root: Path) -> None:
    """16-mixed by default: the heads' gradients stay scaled in `.grad` next to the unscaled shared rows; the
    encoder is a transformer under autocast (attention, layer norms, embeddings)."""
    assert_same_update(key, precision, model, root)


@pytest.mark.parametrize("key", [m.key for m in METHODS])
def test_fp16_overflow_skips_the_step_and_lowers_the_scale(key: str, root: Path) -> None:
    """A scale of 2^126 overflows float32 gradients: both steps are skipped, the scale halves twice, the
    parameters and the algorithm's state (GradVac's targets, GradNorm's weights, RecAdam's λ step, the random
    stream) stay as they were; the Reptile family counts the skipped steps as inner steps, as the GradScaler counts
    them as iterations."""
    start = StateAtStart()
    trainer = fit(key, "16-mixed", root, steps=2, init_scale=2.0**126, callbacks=(start,))
    module = trainer.lightning_module
    assert trainer.global_step == 2
    assert trainer.precision_plugin.scaler.get_scale() == 2.0**124
    assert torch.equal(flat(module.trainable_parameters()), flat(start.parameters))
    if not isinstance(module.algorithm, ReptileFamily):
        assert_unchanged(start.state, module.algorithm.state_dict())


def assert_unchanged(before: Any, after: Any, where: str = "state") -> None:
    """Nested states equal bitwise, NaN equal to NaN (GradNorm's L_t(0) is NaN until a task is first seen)."""
    if isinstance(before, torch.Tensor):
        torch.testing.assert_close(after, before, rtol=0, atol=0, equal_nan=True, msg=f"{where} changed")
    elif isinstance(before, dict):
        assert before.keys() == after.keys(), where
        for key in before:
            assert_unchanged(before[key], after[key], f"{where}.{key}")
    elif isinstance(before, (list, tuple)):
        assert len(before) == len(after), where
        for i, (x, y) in enumerate(zip(before, after)):
            assert_unchanged(x, y, f"{where}[{i}]")
    else:
        assert before == after, f"{where}: {before!r} -> {after!r}"


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_half_precision_weights_are_refused_for_training(precision: str, root: Path) -> None:
    with pytest.raises(ValueError, match=f"trainer.precision={precision}.*--trainer.precision {precision[:-4]}mixed"):
        fit(METHODS[0].key, precision, root, steps=1)


def test_full_precision_turns_autocast_off() -> None:
    a, b = torch.randn(3, 5), torch.randn(5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        with full_precision(a.device):
            assert torch.equal(a @ b, a @ b.clone()) and (a @ b).dtype == torch.float32


def test_loss_scale_without_a_scaler_is_the_identity() -> None:
    scale = LossScale(object())
    x = torch.randn(4)
    assert scale.scale(x) is x and scale.unscale(x) is x and scale.rescale(x) is x
    assert scale.finite([torch.tensor([float("inf")])]) and not scale.skipped()
