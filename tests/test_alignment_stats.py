"""The mean cosine's standard error and the MTL loss of GradientAlignment: the influence against finite
differences, the closed form against a seeded bootstrap and a jackknife over examples, and the logged values
against a recomputation at the same weights."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from callbacks.alignment import GradientAlignment, cosine_matrix
from callbacks.alignment_stats import cos_mean_influence, cos_mean_standard_error
from datamodules.multitask import MultiTaskDataModule
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.multitask import MultiTaskModule
from lightning_modules.task_gradients import flatten, split_parameters
from tests.helpers import SYNTHETIC, add_callback, log_dir, run_cli
from tests.trainer_fixtures import TOKEN_TASK_BERT, RecordingLogger, TokenTask, fit


def cos_mean(gradients: torch.Tensor) -> float:
    cos = cosine_matrix(gradients)
    t = cos.shape[0]
    return float(sum(cos[i, j] for i in range(t) for j in range(i + 1, t)) / (t * (t - 1) / 2))


def example_gradients(seed: int, tasks: int = 3, n: int = 12, dim: int = 30, noise: float = 0.05) -> torch.Tensor:
    """[T, n, D] example gradients: a shared direction plus a task direction plus small per-example noise."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(dim, generator=g, dtype=torch.float64)
    means = shared + torch.randn(tasks, dim, generator=g, dtype=torch.float64)
    return means[:, None, :] + noise * torch.randn(tasks, n, dim, generator=g, dtype=torch.float64)


def closed_form(examples: torch.Tensor) -> float:
    gradients = examples.mean(1)
    return cos_mean_standard_error(gradients @ gradients.T, [e @ gradients.T for e in examples])


def test_influence_is_the_directional_derivative() -> None:
    g = torch.Generator().manual_seed(0)
    gradients = torch.randn(4, 10, generator=g, dtype=torch.float64)
    directions = torch.randn(3, 10, generator=g, dtype=torch.float64)
    eps = 1e-6
    for t in range(4):
        influence = cos_mean_influence(gradients @ gradients.T, directions @ gradients.T, t)
        for i, x in enumerate(directions):
            up, down = gradients.clone(), gradients.clone()
            up[t] += eps * x
            down[t] -= eps * x
            assert influence[i].item() == pytest.approx((cos_mean(up) - cos_mean(down)) / (2 * eps), rel=1e-6)


def test_a_zero_task_gradient_has_no_influence() -> None:
    gradients = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    assert cos_mean_influence(gradients @ gradients.T, x @ gradients.T, 1).tolist() == [0.0]
    eps = 1e-6  # task 0's influence ignores the pair with the zero gradient, whose cosine stays 0
    up, down = gradients.clone(), gradients.clone()
    up[0] += eps * x[0]
    down[0] -= eps * x[0]
    expected = (cos_mean(up) - cos_mean(down)) / (2 * eps)
    assert cos_mean_influence(gradients @ gradients.T, x @ gradients.T, 0).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_agrees_with_the_jackknife_and_a_seeded_bootstrap(seed: int) -> None:
    examples = example_gradients(seed)
    tasks, n, _ = examples.shape
    se = closed_form(examples)
    assert se > 0
    # Jackknife over each task's examples (independent across tasks): Σ_t (n-1)/n Σ_i (f_(i) − f_(·))².
    variance = 0.0
    for t in range(tasks):
        values = []
        for i in range(n):
            means = examples.mean(1)
            means[t] = torch.cat([examples[t, :i], examples[t, i + 1 :]]).mean(0)
            values.append(cos_mean(means))
        mean = sum(values) / n
        variance += (n - 1) / n * sum((v - mean) ** 2 for v in values)
    assert se == pytest.approx(math.sqrt(variance), rel=0.02)
    # Bootstrap: resample every task's examples with replacement (the closed form's n−1 vs the bootstrap's n).
    g = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(2000):
        index = torch.randint(0, n, (tasks, n), generator=g)
        draws.append(cos_mean(torch.stack([examples[t, index[t]].mean(0) for t in range(tasks)])))
    bootstrap = torch.tensor(draws).std().item() * math.sqrt(n / (n - 1))
    assert se == pytest.approx(bootstrap, rel=0.1)


def test_fewer_than_two_examples_have_no_standard_error() -> None:
    examples = example_gradients(0, n=1)
    assert math.isnan(closed_form(examples))


def test_logged_mtl_loss_and_standard_error_at_the_probed_weights(tmp_path: Path) -> None:
    """MTL: the last measurement is at the final weights; recompute the probe losses, the task gradients and
    every example's gradient there, independently of the callback's code path."""
    torch.manual_seed(3)
    model = EncoderClassifier(config=TOKEN_TASK_BERT, head="per_task", tasks=["a", "b", "c"])
    module = MultiTaskModule(model, MTL(tasks_per_step=2))
    data = MultiTaskDataModule([TokenTask(n, seed=i) for i, n in enumerate("abc")], seed=1)
    recorder = RecordingLogger()
    callback = GradientAlignment(every_n_steps=2, probe_batch_size=5, heatmap=False, standard_error=True)
    fit(module, data, 3, tmp_path, [callback], [recorder], torch.optim.AdamW, lr=1e-2)

    logged = {step: m for step, m in recorder.records if "align/cos_mean" in m}
    assert sorted(logged) == [0, 2, 3]
    module.eval()
    shared, _ = split_parameters(module)

    def gradient(task: str, batch: dict) -> torch.Tensor:
        loss = module.model(task, batch).loss
        return flatten(torch.autograd.grad(loss, shared))

    losses = [module.model(task, batch).loss.item() for task, batch in callback.probes.items()]
    assert logged[3]["tradeoff/mtl_loss"] == pytest.approx(sum(losses) / 3, rel=1e-6)
    gradients = torch.stack([gradient(t, b) for t, b in callback.probes.items()]).double()
    examples = [torch.stack([gradient(t, x) for x in callback.examples[t]]).double() for t in callback.probes]
    assert [len(e) for e in examples] == [5, 5, 5]
    torch.testing.assert_close(gradients, torch.stack([e.mean(0) for e in examples]), rtol=1e-4, atol=1e-6)
    expected = cos_mean_standard_error(gradients @ gradients.T, [e @ gradients.T for e in examples])
    assert logged[3]["tradeoff/cos_mean_se"] == pytest.approx(expected, rel=1e-4)
    assert 0 < expected < 1

    rows = list(csv.DictReader(open(tmp_path / "alignment_summary.csv")))
    assert [int(r["step"]) for r in rows] == [0, 2, 3]
    for row in rows:
        step = int(row["step"])
        for key in ("cos_mean", "cos_mean_se", "mtl_loss"):
            assert float(row[key]) == logged[step][(f"tradeoff/{key}" if key != "cos_mean" else "align/cos_mean")]


def test_standard_error_off_by_default_logs_none_and_writes_nan(tmp_path: Path) -> None:
    model = EncoderClassifier(config=TOKEN_TASK_BERT, head="per_task", tasks=["a", "b"])
    module = MultiTaskModule(model, MTL(tasks_per_step=2))
    data = MultiTaskDataModule([TokenTask(n, seed=i) for i, n in enumerate("ab")], seed=1)
    recorder = RecordingLogger()
    callback = GradientAlignment(every_n_steps=5, probe_batch_size=3, heatmap=False)
    fit(module, data, 1, tmp_path, [callback], [recorder], lr=1e-2)
    logged = [m for _, m in recorder.records if "align/cos_mean" in m]
    assert len(logged) == 2 and all("tradeoff/cos_mean_se" not in m and "tradeoff/mtl_loss" in m for m in logged)
    rows = list(csv.DictReader(open(tmp_path / "alignment_summary.csv")))
    assert all(math.isnan(float(r["cos_mean_se"])) for r in rows) and not callback.examples


def test_summary_csv_resumes_without_duplicates(tmp_path: Path) -> None:
    args = ["--config", str(SYNTHETIC / "mtl.yaml"), "--trainer.limit_val_batches=0",
            add_callback("callbacks.alignment.GradientAlignment", every_n_steps=2, heatmap=False)]  # fmt: skip
    run = log_dir(run_cli([*args, "--trainer.max_steps=5"], tmp_path))
    first = list(csv.DictReader(open(run / "alignment_summary.csv")))
    assert [r["step"] for r in first] == ["0", "2", "4", "5"]
    resume = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    assert log_dir(run_cli([*resume, "--trainer.max_steps=8"], tmp_path)) == run
    rows = list(csv.DictReader(open(run / "alignment_summary.csv")))
    assert [r["step"] for r in rows] == ["0", "2", "4", "5", "6", "8"] and rows[:4] == first
