"""GLUE metric collections: keys per task, hand-worked values, and agreement with scikit-learn / scipy."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.metrics.glue import GLUE_TASKS, canonical_task, glue_metrics

sk_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(
    ("task", "keys"),
    [
        ("cola", {"matthews_correlation", "accuracy"}),
        ("sst2", {"accuracy"}),
        ("SST-2", {"accuracy"}),
        ("mrpc", {"accuracy", "f1"}),
        ("qqp", {"accuracy", "f1"}),
        ("sts-b", {"pearson", "spearmanr"}),
        ("mnli", {"accuracy"}),
        ("mnli_mismatched", {"accuracy"}),
        ("xnli", {"accuracy"}),
        ("qnli", {"accuracy"}),
        ("rte", {"accuracy"}),
        ("wnli", {"accuracy"}),
    ],
)
def test_keys_per_task(task: str, keys: set[str]) -> None:
    assert set(glue_metrics(task).keys()) == keys


def test_task_names() -> None:
    assert canonical_task("MNLI-mm") == "mnli"
    assert canonical_task("STS_B") == "stsb"
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    with pytest.raises(ValueError, match="unknown GLUE task 'squad'"):
        glue_metrics("squad")


def test_cola_hand_worked_from_logits() -> None:
    # preds [1, 1, 0, 0, 1] vs targets [1, 0, 0, 0, 1]: TP 2, FP 1, TN 2, FN 0
    # MCC = (2*2 - 1*0) / sqrt(3*2*3*2) = 4/6; accuracy 4/5
    preds = torch.tensor([1, 1, 0, 0, 1])
    target = torch.tensor([1, 0, 0, 0, 1])
    logits = torch.nn.functional.one_hot(preds, 2).float() * 3 - 1
    metrics = glue_metrics("cola")
    metrics.update(logits[:2], target[:2])
    metrics.update(logits[2:], target[2:])
    out = metrics.compute()
    assert out["matthews_correlation"].item() == pytest.approx(2 / 3, rel=1e-6)
    assert out["matthews_correlation"].item() == pytest.approx(sk_metrics.matthews_corrcoef(target, preds), rel=1e-6)
    assert out["accuracy"].item() == pytest.approx(0.8)


def test_mrpc_f1_and_accuracy_from_class_ids() -> None:
    # same counts: F1 = 2TP / (2TP + FP + FN) = 4/5
    preds = torch.tensor([1, 1, 0, 0, 1])
    target = torch.tensor([1, 0, 0, 0, 1])
    out = glue_metrics("mrpc")
    out.update(preds, target)
    result = out.compute()
    assert result["f1"].item() == pytest.approx(0.8)
    assert result["accuracy"].item() == pytest.approx(0.8)
    # F1 is of the positive class 1: predicting all 0 gives F1 0 (class 0's F1 would be 3/4), accuracy 3/5
    zeros = glue_metrics("qqp")
    zeros.update(torch.zeros(5, dtype=torch.long), target)
    assert zeros.compute()["f1"].item() == 0.0
    assert zeros.compute()["accuracy"].item() == pytest.approx(0.6)


def test_random_classification_matches_sklearn() -> None:
    gen = torch.Generator().manual_seed(0)
    for task, classes in [("cola", 2), ("mrpc", 2), ("mnli", 3)]:
        logits = torch.randn(200, classes, generator=gen)
        target = torch.randint(0, classes, (200,), generator=gen)
        metrics = glue_metrics(task)
        for start in range(0, 200, 64):
            metrics.update(logits[start : start + 64], target[start : start + 64])
        out = metrics.compute()
        preds = logits.argmax(-1).numpy()
        assert out["accuracy"].item() == pytest.approx(sk_metrics.accuracy_score(target, preds), rel=1e-6)
        if "f1" in out:
            assert out["f1"].item() == pytest.approx(sk_metrics.f1_score(target, preds), rel=1e-6)
        if "matthews_correlation" in out:
            mcc = sk_metrics.matthews_corrcoef(target, preds)
            assert out["matthews_correlation"].item() == pytest.approx(mcc, rel=1e-5)


def test_stsb_matches_scipy_with_ties() -> None:
    # hand-worked: x = [1, 2, 3, 4], y = [1, 3, 2, 4]; deviations give sum dx*dy = 4, sum dx^2 = sum dy^2 = 5,
    # so r = 4/5 (and Spearman equals Pearson because the values are their own ranks)
    metrics = glue_metrics("stsb")
    metrics.update(torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 3.0]))  # [N, 1] regression head output
    metrics.update(torch.tensor([3.0, 4.0]), torch.tensor([2.0, 4.0]))
    out = metrics.compute()
    assert out["pearson"].item() == pytest.approx(0.8, rel=1e-6)
    assert out["spearmanr"].item() == pytest.approx(0.8, rel=1e-6)

    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 11, (300,), generator=gen).float() / 2  # STS-B-like 0..5 in halves: many ties
    preds = target + torch.randn(300, generator=gen)
    preds[:50] = preds[:50].round()  # ties in predictions too
    metrics = glue_metrics("stsb")
    for start in range(0, 300, 100):
        metrics.update(preds[start : start + 100], target[start : start + 100])
    out = metrics.compute()
    assert out["pearson"].item() == pytest.approx(scipy_stats.pearsonr(preds, target)[0], rel=1e-5)
    assert out["spearmanr"].item() == pytest.approx(scipy_stats.spearmanr(preds, target)[0], rel=1e-5)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"logits \[N, C\] or class ids \[N\]"):
        glue_metrics("sst2").update(torch.rand(4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="do not match targets"):
        glue_metrics("sst2").update(torch.tensor([0, 1]), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"regression preds must be \[N\] or \[N, 1\]"):
        glue_metrics("stsb").update(torch.rand(4, 2), torch.rand(4))
