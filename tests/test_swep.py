"""SWEP: the KL term by hand and against torch.distributions, the embedding hook (e ⊙ z; z = 1 gives the clean
loss exactly), loss and gradients of a step against an independent computation on a tiny random BERT, the
generator's optimizer following the inner lr, the state round trip (exact continuation), clear errors, and a
CLI run with exact resume."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.distributions import Normal, kl_divergence

from datamodules.task import TaskDataModule
from lightning_modules.algorithms.swep import (
    AUTHORS_PRIOR_VARIANCE,
    SWEP,
    find_encoder,
    gaussian_kl,
    multiply_embeddings,
)
from lightning_modules.models.encoder import EncoderClassifier
from tests.helpers import TinyTaskModel, load_checkpoint, log_dir, run_cli
from tests.schema_fixtures import tiny_bert_config

TINY = tiny_bert_config(40, max_positions=16)
NO_DROPOUT = {**TINY, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


class FakeModule:
    """A `TrainingModule` (what an Algorithm sees of MultiTaskModule, see test_recadam.FakeModule)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any = None) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.task_names: list[str] = []  # SWEP does not read them
        self.trainer = SimpleNamespace(max_steps=-1)
        self.grad_clip_norm: float | None = None
        self.logged: dict[str, float] = {}
        self.emitted: list[tuple[str, list[str]]] = []

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def task_loss(self, task: str, batch: Any) -> torch.Tensor:
        return self.model(task, batch).loss

    def manual_backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()

    def optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer

    def reset_optimizer_state(self) -> None:
        self.optimizer.state.clear()

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def log(self, name: str, value: Any, **kwargs: Any) -> None:
        self.logged[name] = float(value)

    def emit(self, phase: str, tasks: list[str]) -> None:
        self.emitted.append((phase, tasks))


def make_batch(seed: int = 0, n: int = 3, seq: int = 6, pad: bool = True) -> dict[str, torch.Tensor]:
    """Token ids with the last two positions of row 0 padded, token types, 3-class labels."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, seq, dtype=torch.long)
    if pad:
        mask[0, -2:] = 0
    return {
        "input_ids": torch.randint(1, 40, (n, seq), generator=g) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros(n, seq, dtype=torch.long),
        "labels": torch.randint(0, 3, (n,), generator=g),
    }


def classifier(config: dict[str, Any] = NO_DROPOUT, dropout: float = 0.0) -> EncoderClassifier:
    torch.manual_seed(0)
    return EncoderClassifier(config=config, num_labels=3, dropout=dropout)


def set_up(algorithm: SWEP, model: nn.Module, lr: float = 0.01, scheduler: bool = False) -> FakeModule:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step) if scheduler else None
    module = FakeModule(model, optimizer, sched)
    algorithm.setup(module)  # type: ignore[arg-type]
    return module


# --------------------------------------------------------------------------- the KL term
def test_kl_by_hand() -> None:
    # prior N(1, 0.5): dim 1 (μ .5, σ² .25): ½[log .5 − log .25 + (.25 + .25)/.5 − 1] = ½ log 2
    #                  dim 2 (μ 2, σ² 1):    ½[log .5 − 0 + (1 + 1)/.5 − 1]        = ½ (3 − log 2)   → sum 1.5
    mu = torch.tensor([[0.5, 2.0]])
    log_var = torch.tensor([[math.log(0.25), 0.0]])
    assert gaussian_kl(mu, log_var, 1.0, 0.5).item() == pytest.approx(1.5, abs=1e-6)
    # at the prior itself the KL is 0; the authors' default prior variance is sqrt(0.1/0.9) = 1/3
    assert AUTHORS_PRIOR_VARIANCE == pytest.approx(1 / 3)
    at_prior = gaussian_kl(torch.ones(2, 3), torch.full((2, 3), math.log(1 / 3)))
    assert at_prior.item() == pytest.approx(0.0, abs=1e-6)


def test_kl_matches_torch_distributions_and_ignores_padding() -> None:
    g = torch.Generator().manual_seed(1)
    mu, log_var = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, 3:] = 0
    per_token = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(1.0, math.sqrt(0.7))).sum(-1)
    expected = per_token[mask.bool()].mean()
    torch.testing.assert_close(gaussian_kl(mu, log_var, 1.0, 0.7, mask), expected)
    mu_padded = mu.clone()
    mu_padded[1, 3:] = 1e3  # padding tokens do not count
    torch.testing.assert_close(gaussian_kl(mu_padded, log_var, 1.0, 0.7, mask), expected)
    torch.testing.assert_close(gaussian_kl(mu, log_var, 1.0, 0.7), per_token.mean())
    with pytest.raises(ValueError, match="selects no token"):
        gaussian_kl(mu, log_var, mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="does not match"):
        gaussian_kl(mu, log_var, mask=torch.ones(2, 4))


# --------------------------------------------------------------------------- the hook
def test_hook_multiplies_the_word_embeddings_only_while_active() -> None:
    model = classifier().eval()
    data = make_batch()
    encoder = find_encoder(model)
    assert encoder is model.encoder
    words = encoder.get_input_embeddings()
    z = torch.rand(3, 6, 16, generator=torch.Generator().manual_seed(2)) + 0.5
    inputs = {k: data[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        with multiply_embeddings(words, z):
            hooked = encoder(**inputs).last_hidden_state
        direct = encoder(
            inputs_embeds=words(data["input_ids"]) * z,
            attention_mask=data["attention_mask"],
            token_type_ids=data["token_type_ids"],
        ).last_hidden_state
        assert torch.equal(hooked, direct)
        clean = model("en", data).loss
        with multiply_embeddings(words, torch.ones(3, 6, 16)):
            assert torch.equal(model("en", data).loss, clean)  # z = 1: the clean loss exactly
        assert torch.equal(model("en", data).loss, clean)  # the hook is gone
        with multiply_embeddings(words, torch.ones(3, 5, 16)), pytest.raises(ValueError, match="same input_ids"):
            model("en", data)


# --------------------------------------------------------------------------- one step against a reference
def test_loss_and_gradients_match_an_independent_computation() -> None:
    model = classifier().eval()  # no dropout: the only randomness is ε of z
    algorithm = SWEP(tasks_per_step=1, beta=0.3, prior_variance=0.6)
    module = set_up(algorithm, model)
    reference, noise = copy.deepcopy(model), copy.deepcopy(algorithm.noise_generator)
    data = make_batch()

    torch.manual_seed(5)
    totals = algorithm.backward(module, [("en", data)])  # type: ignore[arg-type]
    got = [p.grad.clone() for p in model.parameters()] + [
        p.grad.clone() for p in algorithm.noise_generator.parameters()
    ]

    torch.manual_seed(5)
    inputs = {k: data[k] for k in ("attention_mask", "token_type_ids")}
    hidden = reference.encoder(input_ids=data["input_ids"], **inputs).last_hidden_state
    clean = F.cross_entropy(reference.head(hidden[:, 0]), data["labels"])
    mu, log_var = noise(hidden.detach())
    z = mu + torch.randn(mu.shape) * (0.5 * log_var).exp()
    embeds = reference.encoder.embeddings.word_embeddings(data["input_ids"]) * z
    perturbed_hidden = reference.encoder(inputs_embeds=embeds, **inputs).last_hidden_state
    perturbed = F.cross_entropy(reference.head(perturbed_hidden[:, 0]), data["labels"])
    kl_tokens = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(1.0, math.sqrt(0.6))).sum(-1)
    kl = kl_tokens[data["attention_mask"].bool()].mean()
    loss = 0.5 * (clean + perturbed) + 0.3 * kl
    loss.backward()
    want = [p.grad for p in reference.parameters()] + [p.grad for p in noise.parameters()]

    for name, value in (("clean", clean), ("perturbed", perturbed), ("kl", kl), ("loss", loss)):
        torch.testing.assert_close(totals[name], value.detach(), msg=name)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in got[-4:])  # the generator gets a gradient through z and the KL


def test_steps_train_model_and_generator_with_the_inner_lr() -> None:
    model = classifier(TINY, dropout=0.1)
    algorithm = SWEP(tasks_per_step=2)
    module = set_up(algorithm, model, lr=0.01, scheduler=True)
    model_before = [p.detach().clone() for p in model.parameters()]
    noise_before = [p.detach().clone() for p in algorithm.noise_generator.parameters()]
    for step in range(3):
        loss = algorithm.training_step(module, [("a", make_batch(step)), ("b", make_batch(10 + step))])  # type: ignore[arg-type]
        assert torch.isfinite(loss)
        # the generator's lr is the inner lr of the same step (read before the scheduler halves it)
        assert algorithm._noise_optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**step)
    assert algorithm.steps == 3
    assert module.emitted == [("step", ["a", "b"])] * 3
    assert {"swep/kl", "swep/perturbed"} <= set(module.logged)
    assert all(not torch.equal(a, p) for a, p in zip(model_before, model.parameters()) if p.requires_grad)
    assert all(not torch.equal(a, p) for a, p in zip(noise_before, algorithm.noise_generator.parameters()))
    assert all(p.grad is None for p in algorithm.noise_generator.parameters())


def test_fixed_noise_lr_and_gradient_clipping() -> None:
    model = classifier()
    algorithm = SWEP(tasks_per_step=1, noise_lr=0.5)
    module = set_up(algorithm, model, lr=0.01)
    module.grad_clip_norm = 1e-3
    seen: list[float] = []
    step = algorithm._noise_optimizer.step

    def spy(*args: Any, **kwargs: Any) -> Any:
        grads = [p.grad.reshape(-1) for p in algorithm.noise_generator.parameters() if p.grad is not None]
        seen.append(float(torch.cat(grads).norm()))
        return step(*args, **kwargs)

    algorithm._noise_optimizer.step = spy  # type: ignore[method-assign]
    algorithm.training_step(module, [("en", make_batch())])  # type: ignore[arg-type]
    assert algorithm._noise_optimizer.param_groups[0]["lr"] == 0.5
    assert seen[0] == pytest.approx(1e-3, rel=1e-4)


# --------------------------------------------------------------------------- state
def test_state_round_trip_continues_exactly() -> None:
    model = classifier(TINY, dropout=0.1)
    algorithm = SWEP(tasks_per_step=1)
    module = set_up(algorithm, model)
    for step in range(2):
        algorithm.training_step(module, [("en", make_batch(step))])  # type: ignore[arg-type]

    buffer = io.BytesIO()
    torch.save(algorithm.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # what the CLI's checkpoint check loads
    twin_model = copy.deepcopy(model)
    twin_optimizer = torch.optim.AdamW(twin_model.parameters(), lr=0.01)
    twin_optimizer.load_state_dict(copy.deepcopy(module.optimizer.state_dict()))
    twin = SWEP(tasks_per_step=1)
    twin.load_state_dict(state)  # before setup, as Lightning restores checkpoints before fit start
    twin_module = FakeModule(twin_model, twin_optimizer)
    twin.setup(twin_module)  # type: ignore[arg-type]
    assert twin.steps == 2

    rng = torch.get_rng_state()
    algorithm.training_step(module, [("en", make_batch(7))])  # type: ignore[arg-type]
    torch.set_rng_state(rng)
    twin.training_step(twin_module, [("en", make_batch(7))])  # type: ignore[arg-type]
    for a, b in zip(model.parameters(), twin_model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(algorithm.noise_generator.parameters(), twin.noise_generator.parameters()):
        assert torch.equal(a, b)

    wider = SWEP()
    set_up(wider, classifier({**TINY, "hidden_size": 32}))
    with pytest.raises(ValueError, match="sizes"):
        wider.load_state_dict(state)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": -1.0}, "beta"),
        ({"prior_variance": 0.0}, "prior_variance"),
        ({"noise_dropout": 1.0}, "noise_dropout"),
        ({"noise_lr": 0.0}, "noise_lr"),
        ({"noise_weight_decay": -0.1}, "noise_weight_decay"),
        ({"tasks_per_step": 0}, "tasks_per_step"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SWEP(**kwargs)


def test_models_without_an_encoder_and_fp16_scaling_are_rejected() -> None:
    tiny = TinyTaskModel(tasks=["a"])
    with pytest.raises(ValueError, match="no Hugging Face encoder"):
        SWEP().setup(FakeModule(tiny, torch.optim.SGD(tiny.parameters(), lr=0.1)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoder_path 'nope'"):
        find_encoder(classifier(), "nope")
    assert find_encoder(classifier(), "encoder") is not None
    model = classifier()
    module = FakeModule(model, torch.optim.SGD(model.parameters(), lr=0.1))
    module._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()), world_size=1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="bf16-mixed"):
        SWEP().setup(module)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- through the CLI
class RandomTokenTask(TaskDataModule):
    """Random 3-class token sequences of length 6 (every example its own label noise; a tokenizer-free task)."""

    def __init__(self, name: str, size: int = 24, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__(name=name, batch_size=batch_size)
        self.size, self.seed = size, seed

    def setup(self, stage: str) -> None:
        def examples(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
            g = torch.Generator().manual_seed(seed)
            ids = torch.randint(1, 40, (n, 6), generator=g)
            labels = ids[:, 0] % 3
            return [
                {"input_ids": ids[i], "attention_mask": torch.ones(6, dtype=torch.long), "labels": labels[i]}
                for i in range(n)
            ]

        self.train_dataset = examples(self.size, self.seed)
        self.val_dataset = self.test_dataset = examples(6, self.seed + 1)


def swep_config(path: Path, max_steps: int, every: int = 100) -> Path:
    config = {
        "seed_everything": 3,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": max_steps, "log_every_n_steps": 1},
        "checkpoint": {"every_n_train_steps": every},
        "model": {
            "model": {
                "class_path": "lightning_modules.models.encoder.EncoderClassifier",
                "init_args": {"config": TINY, "num_labels": 3},
            },
            "algorithm": {"class_path": "lightning_modules.algorithms.swep.SWEP", "init_args": {"tasks_per_step": 2}},
        },
        "data": {
            "tasks": [
                {"class_path": "tests.test_swep.RandomTokenTask", "init_args": {"name": name, "seed": seed}}
                for name, seed in (("a", 0), ("b", 1))
            ],
            "steps_per_epoch": 4,
            "seed": 5,
        },
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_cli_fit_saves_the_generator_and_resumes_exactly(tmp_path: Path) -> None:
    full = run_cli(["--config", str(swep_config(tmp_path / "full.yaml", 6))], tmp_path / "full")
    half = run_cli(["--config", str(swep_config(tmp_path / "half.yaml", 3, every=3))], tmp_path / "half")
    checkpoint = log_dir(half) / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(checkpoint)["multitask"]["algorithm_state"]
    assert saved["steps"] == 3 and set(saved) == {"steps", "sizes", "noise_generator", "noise_optimizer"}
    resumed = run_cli(
        ["--config", str(swep_config(tmp_path / "resume.yaml", 6)), f"--ckpt_path={checkpoint}"], tmp_path / "half"
    )
    assert resumed.trainer.global_step == full.trainer.global_step == 6
    assert resumed.model.algorithm.steps == 6
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    full_noise = full.model.algorithm.noise_generator.parameters()
    for p, q in zip(full_noise, resumed.model.algorithm.noise_generator.parameters()):
        assert torch.equal(p, q)
    assert "train/loss" in full.trainer.callback_metrics and "swep/kl" in full.trainer.callback_metrics
