"""Strict-IOB2 span F1 against hand-worked counts and against seqeval (mode="strict", scheme=IOB2)."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from lightning_modules.metrics.ner import NerSpanF1, extract_spans
from tests.metric_samples import NER_LABELS as LABELS
from tests.metric_samples import random_sequences

seqeval_metrics = pytest.importorskip("seqeval.metrics")
seqeval_scheme = pytest.importorskip("seqeval.scheme")

ID = {label: i for i, label in enumerate(LABELS)}


def ids(*labels: str) -> list[int]:
    return [ID[label] for label in labels]


def seqeval_strict(y_true: list[list[str]], y_pred: list[list[str]]) -> dict[str, float]:
    kwargs = {"mode": "strict", "scheme": seqeval_scheme.IOB2}
    with warnings.catch_warnings():  # zero-division warnings on empty cases
        warnings.simplefilter("ignore")
        return {
            "f1": seqeval_metrics.f1_score(y_true, y_pred, **kwargs),
            "precision": seqeval_metrics.precision_score(y_true, y_pred, **kwargs),
            "recall": seqeval_metrics.recall_score(y_true, y_pred, **kwargs),
        }


def seqeval_counts(y_true: list[list[str]], y_pred: list[list[str]]) -> dict[str, tuple[int, int, int]]:
    """type -> (TP, predicted, gold) from seqeval's own strict entity extraction."""
    true = seqeval_scheme.Entities(y_true, seqeval_scheme.IOB2)
    pred = seqeval_scheme.Entities(y_pred, seqeval_scheme.IOB2)
    out = {}
    for tag in sorted(true.unique_tags | pred.unique_tags):
        t, p = true.filter(tag), pred.filter(tag)
        out[tag] = (len(t & p), len(p), len(t))
    return out


def our_counts(metric: NerSpanF1) -> dict[str, tuple[int, int, int]]:
    return {
        tag: (int(metric.tp[k]), int(metric.pred_count[k]), int(metric.gold_count[k]))
        for k, tag in enumerate(metric.types)
        if metric.pred_count[k] or metric.gold_count[k]
    }


def test_extract_spans_strict_rules() -> None:
    def spans(*labels: str) -> set[tuple[int, int, int]]:
        return extract_spans([label[0] for label in labels], [label[2:] or "-" for label in labels])  # type: ignore

    assert spans("B-PER", "I-PER", "O", "B-LOC") == {("PER", 0, 2), ("LOC", 3, 4)}
    assert spans("I-PER", "I-PER", "O") == set()  # no B: nothing in strict mode
    assert spans("B-PER", "I-LOC", "I-LOC") == {("PER", 0, 1)}  # type change ends the entity, I-LOC dropped
    assert spans("B-PER", "B-PER", "I-PER") == {("PER", 0, 1), ("PER", 1, 3)}  # B always starts a new one
    assert spans("O", "B-ORG") == {("ORG", 1, 2)}  # entity at the end of the sequence
    assert spans() == set()


def test_hand_worked_strict_differs_from_default() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"]]
    metric = NerSpanF1(LABELS)
    metric.update(torch.tensor([ids(*pred[0])]), torch.tensor([ids(*gold[0])]))
    out = metric.compute()
    # strict: pred {PER(0,2)}, gold {PER(0,2), LOC(3,4)}: TP 1, P = 1, R = 1/2, F1 = 2/3
    assert out["precision"].item() == pytest.approx(1.0)
    assert out["recall"].item() == pytest.approx(0.5)
    assert out["f1"].item() == pytest.approx(2 / 3)
    assert seqeval_strict(gold, pred)["f1"] == pytest.approx(2 / 3)
    # seqeval's default (conlleval) mode opens an entity at the lone I-LOC and scores 1.0
    assert seqeval_metrics.f1_score(gold, pred) == pytest.approx(1.0)


def test_ignore_index_and_logits() -> None:
    # words: [John] [Smith] [visited] [New York]; sub-token positions carry -100
    gold = torch.tensor([[-100, ID["B-PER"], -100, ID["I-PER"], ID["O"], ID["B-LOC"], -100, ID["I-LOC"], -100]])
    pred = torch.tensor([[0, ID["B-PER"], ID["B-ORG"], ID["I-PER"], ID["O"], ID["B-LOC"], ID["I-ORG"], ID["O"], 5]])
    metric = NerSpanF1(LABELS, per_type=True)
    metric.update(torch.nn.functional.one_hot(pred, len(LABELS)).float(), gold)  # logits [B, L, C]
    out = metric.compute()
    # kept: gold B-PER I-PER O B-LOC I-LOC -> {PER(0,2), LOC(3,5)}; pred B-PER I-PER O B-LOC O -> {PER(0,2), LOC(3,4)}
    assert our_counts(metric) == {"PER": (1, 1, 1), "LOC": (0, 1, 1)}
    assert out["f1"].item() == pytest.approx(0.5)
    assert out["f1_PER"].item() == pytest.approx(1.0)
    assert out["f1_LOC"].item() == 0.0
    assert out["f1_ORG"].item() == 0.0  # a type never seen scores 0


def test_ragged_lists_and_empty_cases() -> None:
    metric = NerSpanF1(LABELS)
    metric.update([[0, 0], [], [0]], [[0, 0], [], [0]])  # no entity anywhere
    assert {k: v.item() for k, v in metric.compute().items()} == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert seqeval_strict([["O", "O"], [], ["O"]], [["O", "O"], [], ["O"]]) == {"f1": 0, "precision": 0, "recall": 0}


def to_labels(rows: list[list[int]], keep_from: list[list[int]], labels: list[str]) -> list[list[str]]:
    return [[labels[r] for r, k in zip(row, keep) if k != -100] for row, keep in zip(rows, keep_from)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sequences_match_seqeval_exactly(seed: int) -> None:
    rng = random.Random(seed)
    preds, golds = random_sequences(rng, 300, LABELS)
    metric = NerSpanF1(LABELS, per_type=True)
    for start in range(0, len(preds), 32):  # several updates, ragged batches
        metric.update(preds[start : start + 32], golds[start : start + 32])
    y_true, y_pred = to_labels(golds, golds, LABELS), to_labels(preds, golds, LABELS)

    counts = seqeval_counts(y_true, y_pred)
    assert our_counts(metric) == counts
    assert sum(c[0] for c in counts.values()) > 50  # the test exercises true positives, not just errors

    out = metric.compute()
    for key, value in seqeval_strict(y_true, y_pred).items():
        assert out[key].item() == pytest.approx(value, rel=1e-6), key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = seqeval_metrics.classification_report(
            y_true, y_pred, mode="strict", scheme=seqeval_scheme.IOB2, output_dict=True
        )
    for tag in counts:
        assert out[f"f1_{tag}"].item() == pytest.approx(report[tag]["f1-score"], rel=1e-6)
        assert out[f"precision_{tag}"].item() == pytest.approx(report[tag]["precision"], rel=1e-6)
        assert out[f"recall_{tag}"].item() == pytest.approx(report[tag]["recall"], rel=1e-6)
        assert int(metric.gold_count[metric.types.index(tag)]) == report[tag]["support"]
    assert out["f1"].item() == pytest.approx(report["micro avg"]["f1-score"], rel=1e-6)


def test_random_tensor_batches_with_other_label_order() -> None:
    """Padded [B, L] tensors (pad = -100), a label list in another order and an odd type name."""
    labels = ["B-MISC", "O", "I-MISC", "B-LOC", "I-LOC", "B-DATE_TIME", "I-DATE_TIME"]
    rng = random.Random(7)
    preds, golds = random_sequences(rng, 200, labels)
    width = max(len(g) for g in golds)
    pad = [[-100] * (width - len(g)) for g in golds]
    pred_t = torch.tensor([p + x for p, x in zip(preds, pad)])
    gold_t = torch.tensor([g + x for g, x in zip(golds, pad)])
    metric = NerSpanF1(labels)
    metric.update(pred_t[:100], gold_t[:100])
    metric.update(pred_t[100:], gold_t[100:])
    y_true, y_pred = to_labels(golds, golds, labels), to_labels(preds, golds, labels)
    assert our_counts(metric) == seqeval_counts(y_true, y_pred)
    for key, value in seqeval_strict(y_true, y_pred).items():
        assert metric.compute()[key].item() == pytest.approx(value, rel=1e-6)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="'PER' is not an IOB2 label"):
        NerSpanF1(["O", "PER"])
    with pytest.raises(ValueError, match="no entity type"):
        NerSpanF1(["O"])
    metric = NerSpanF1(LABELS)
    with pytest.raises(ValueError, match=r"outside \[0, 7\)"):
        metric.update([[7]], [[0]])
    with pytest.raises(ValueError, match="2 predicted labels but 1 target"):
        metric.update([[0, 0]], [[0]])
    with pytest.raises(ValueError, match="2 predicted sequences but 1"):
        metric.update([[0], [0]], [[0]])
    with pytest.raises(ValueError, match="logits"):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))


# ----------------------------------------------------------------------------- DDP safety


def test_states_are_sum_reduced_counts() -> None:
    metric = NerSpanF1(LABELS)
    assert set(metric._defaults) == {"tp", "pred_count", "gold_count"}
    assert all(fx is dim_zero_sum for fx in metric._reductions.values())
    assert all(v.dtype == torch.long and v.shape == (3,) for v in metric._defaults.values())
