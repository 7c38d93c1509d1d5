"""Pearson, Spearman and Matthews correlation: hand-worked values and degenerate cases (never skipped), agreement with
scipy / scikit-learn where installed, and a NaN score reaching the task average and checkpoint ranking unchanged."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torchmetrics import MetricCollection

from datamodules.multitask import MultiTaskDataModule
from datamodules.task import TaskDataModule
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.metrics.correlation import (
    MatthewsCorrelation,
    PearsonCorrelation,
    SpearmanCorrelation,
    average_ranks,
    matthews,
)
from lightning_modules.models.base import TaskModel, TaskOutput
from lightning_modules.multitask import MultiTaskModule
from tests.trainer_fixtures import RecordingLogger

try:
    import scipy.stats as scipy_stats
    import sklearn.metrics as sk_metrics
except ImportError:
    scipy_stats = sk_metrics = None

needs_references = pytest.mark.skipif(scipy_stats is None, reason="scipy and scikit-learn are not installed")


def correlation(metric: type, preds: list[float], target: list[float], batches: int = 1) -> float:
    m = metric()
    p, t = torch.tensor(preds), torch.tensor(target)
    for k in range(batches):
        m.update(p[k::batches], t[k::batches])
    return m.compute().item()


def mcc(preds: list[int], target: list[int]) -> float:
    m = MatthewsCorrelation()
    m.update(torch.tensor(preds), torch.tensor(target))
    return m.compute().item()


# ----------------------------------------------------------------------------- hand-worked (never skipped)


def test_average_ranks_of_ties() -> None:
    ranks = average_ranks(torch.tensor([10.0, 20.0, 20.0, 30.0, 20.0, 5.0]))
    torch.testing.assert_close(ranks, torch.tensor([2.0, 4.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64))


def test_hand_worked_correlations() -> None:
    # x = [1, 2, 3, 4], y = [1, 3, 2, 4]: sum dx*dy = 4, sum dx^2 = sum dy^2 = 5, r = 4/5 (ranks are the values)
    for metric in (PearsonCorrelation, SpearmanCorrelation):
        assert correlation(metric, [1, 2, 3, 4], [1, 3, 2, 4], batches=2) == pytest.approx(0.8, rel=1e-7)
    # Spearman with ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]; sum dx*dy = 4.5, sum dx^2 = 4.5, dy^2 = 5
    assert correlation(SpearmanCorrelation, [0, 7, 7, 9], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert correlation(SpearmanCorrelation, [4, 3, 2, 1], [1, 2, 3, 4]) == -1.0  # exact, no epsilon


@pytest.mark.parametrize("metric", [PearsonCorrelation, SpearmanCorrelation])
def test_undefined_correlations_are_nan(metric: type) -> None:
    assert math.isnan(correlation(metric, [2, 2, 2, 2], [1, 2, 3, 4]))  # constant predictions
    assert math.isnan(correlation(metric, [1, 2, 3, 4], [3, 3, 3, 3]))  # constant targets
    assert math.isnan(correlation(metric, [0.1] * 35, [k / 35 for k in range(35)], batches=5))
    assert math.isnan(correlation(metric, [1.0], [2.0]))  # one pair
    assert math.isnan(correlation(metric, [1, float("nan"), 3], [1, 2, 3]))  # a NaN score (diverged model)
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert math.isnan(metric().compute().item())  # no pair at all


def test_running_moments_would_give_a_finite_number_for_constant_predictions() -> None:
    """Why Pearson keeps the pairs: torchmetrics' moment-based Pearson (and its Spearman) return ~0 here."""
    from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

    preds, target = torch.full((35,), 0.1), torch.arange(35.0) / 35
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for theirs in (PearsonCorrCoef(), SpearmanCorrCoef()):
            for k in range(5):
                theirs.update(preds[k::5], target[k::5])
            assert math.isfinite(theirs.compute().item())


def test_matthews_degenerate_cases_are_zero() -> None:
    assert mcc([1, 1, 1], [1, 1, 1]) == 0.0  # one class everywhere (torchmetrics: 1)
    assert mcc([0, 0, 0], [0, 0, 0]) == 0.0
    assert mcc([1, 1, 1], [0, 1, 0]) == 0.0  # constant predictions (torchmetrics: -0.41)
    assert mcc([0, 1, 0], [1, 1, 1]) == 0.0  # constant targets
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert MatthewsCorrelation().compute().item() == 0.0  # no example
    # preds [1, 1, 0, 0, 1] vs targets [1, 0, 0, 0, 1]: TP 2, FP 1, TN 2, FN 0; (4 - 0) / sqrt(3*2*3*2) = 2/3
    assert mcc([1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(2 / 3, rel=1e-7)
    assert mcc([0, 1], [1, 0]) == -1.0
    assert matthews(torch.tensor([[2, 1], [0, 2]])).item() == pytest.approx(2 / 3)


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match=r"regression preds must be \[N\] or \[N, 1\]"):
        PearsonCorrelation().update(torch.rand(4, 2), torch.rand(4))


# ----------------------------------------------------------------------------- against scipy / scikit-learn


def reference_correlations(preds: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's ConstantInputWarning
        p, t = preds.double().numpy(), target.double().numpy()
        return float(scipy_stats.pearsonr(p, t)[0]), float(scipy_stats.spearmanr(p, t)[0])


@needs_references
def test_pearson_and_spearman_are_scipys_including_degenerate_cases() -> None:
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 11, (300,), generator=gen).double() / 2  # STS-B-like 0..5 in halves: many ties
    preds = target + torch.randn(300, generator=gen, dtype=torch.float64)
    preds[:50] = preds[:50].round()  # ties in predictions too
    cases = {
        "random": (preds, target),
        "constant preds": (torch.full((300,), 2.5, dtype=torch.float64), target),
        "constant target": (preds, torch.full((300,), 0.1, dtype=torch.float64)),
        "two pairs": (preds[:2], target[:2]),
        "perfect": (target * 3 + 1, target),
    }
    for name, (p, t) in cases.items():
        want = reference_correlations(p, t)
        got = (correlation(PearsonCorrelation, p.tolist(), t.tolist(), 3),)
        got += (correlation(SpearmanCorrelation, p.tolist(), t.tolist(), 3),)
        for g, w in zip(got, want):
            assert (math.isnan(g) and math.isnan(w)) or g == pytest.approx(w, rel=1e-6, abs=1e-7), name


@needs_references
def test_matthews_is_sklearns_including_degenerate_cases() -> None:
    gen = torch.Generator().manual_seed(2)
    cases = [torch.randint(0, 2, (2, 200), generator=gen) for _ in range(5)]
    cases += [torch.tensor([[1, 1, 1], [1, 1, 1]]), torch.tensor([[0, 0, 0], [0, 1, 0]])]
    cases += [torch.tensor([[1, 0, 1], [0, 0, 0]]), torch.tensor([[1, 0], [1, 0]])]
    for preds, target in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = sk_metrics.matthews_corrcoef(target.numpy(), preds.numpy())
        assert mcc(preds.tolist(), target.tolist()) == pytest.approx(want, rel=1e-6, abs=1e-12)


# ----------------------------------------------------------------------------- a NaN score in a run


class Scores(TaskDataModule):
    """Six examples whose target is their index."""

    def setup(self, stage: str) -> None:
        self.train_dataset = self.val_dataset = self.test_dataset = torch.arange(6.0)

    def collate(self, examples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(examples)


class Regressor(TaskModel):
    """Predicts w * index, except on task "flat", where it predicts w (a constant)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, task: str, batch: torch.Tensor) -> TaskOutput:
        preds = self.w * (torch.ones_like(batch) if task == "flat" else batch)
        return TaskOutput(loss=((preds - batch) ** 2).mean(), preds=preds.detach(), targets=batch)

    def eval_metrics(self, task: str) -> MetricCollection:
        return MetricCollection({"pearson": PearsonCorrelation(), "spearmanr": SpearmanCorrelation()})


def test_a_nan_score_is_logged_as_nan_and_averaged_as_nan(tmp_path: Path) -> None:
    module = MultiTaskModule(Regressor(), MTL(tasks_per_step=2))
    data = MultiTaskDataModule([Scores("flat", batch_size=3), Scores("fine", batch_size=3)], seed=0)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/avg/pearson", mode="max", save_top_k=1)
    logger: Any = RecordingLogger()
    trainer = pl.Trainer(
        max_steps=2, val_check_interval=1, accelerator="cpu", logger=logger, callbacks=[checkpoint],
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    logged = {k: v for _, m in logger.records for k, v in m.items() if k.startswith("val/")}
    assert logged["val/fine/pearson"] == pytest.approx(1.0) and logged["val/fine/spearmanr"] == pytest.approx(1.0)
    assert math.isnan(logged["val/flat/pearson"]) and math.isnan(logged["val/flat/spearmanr"])
    assert math.isnan(logged["val/avg/pearson"]) and math.isnan(logged["val/avg/spearmanr"])  # not 0.5, not 1
    # ModelCheckpoint ranks a NaN monitor value as the worst possible (-inf for mode max) and still saves top-k
    assert checkpoint.best_model_score is not None and checkpoint.best_model_score.item() == float("-inf")
