"""Span F1 in both chunkings (seqeval's default conlleval mode and its strict IOB2 mode): hand-worked spans and
counts, and, where seqeval is installed, agreement with it on random sequences."""

from __future__ import annotations

import random
import warnings
from typing import Any

import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from lightning_modules.metrics.ner import NerSpanF1, extract_spans
from tests.metric_samples import NER_LABELS as LABELS
from tests.metric_samples import random_sequences

try:
    import seqeval.metrics as seqeval_metrics
    import seqeval.scheme as seqeval_scheme
    from seqeval.metrics.sequence_labeling import get_entities
except ImportError:  # the hand-worked tests below still run
    seqeval_metrics = seqeval_scheme = get_entities = None

needs_seqeval = pytest.mark.skipif(seqeval_metrics is None, reason="seqeval is not installed (pip install seqeval)")
CHUNKINGS = ("conlleval", "strict_iob2")
ID = {label: i for i, label in enumerate(LABELS)}


def ids(*labels: str) -> list[int]:
    return [ID[label] for label in labels]


def seqeval_kwargs(chunking: str) -> dict[str, Any]:
    return {} if chunking == "conlleval" else {"mode": "strict", "scheme": seqeval_scheme.IOB2}


def seqeval_scores(y_true: list[list[str]], y_pred: list[list[str]], chunking: str) -> dict[str, float]:
    kwargs = seqeval_kwargs(chunking)
    with warnings.catch_warnings():  # zero-division warnings on empty cases
        warnings.simplefilter("ignore")
        return {
            "f1": seqeval_metrics.f1_score(y_true, y_pred, **kwargs),
            "precision": seqeval_metrics.precision_score(y_true, y_pred, **kwargs),
            "recall": seqeval_metrics.recall_score(y_true, y_pred, **kwargs),
        }


def seqeval_entities(rows: list[list[str]], chunking: str) -> set[tuple[str, int, int, int]]:
    """(type, sequence, start, end exclusive) of every entity, from seqeval's own extraction."""
    if chunking == "strict_iob2":
        entities = seqeval_scheme.Entities(rows, seqeval_scheme.IOB2).entities
        return {(e.tag, e.sent_id, e.start, e.end) for sentence in entities for e in sentence}
    return {(tag, k, start, end + 1) for k, row in enumerate(rows) for tag, start, end in get_entities(row)}


def seqeval_counts(y_true: list[list[str]], y_pred: list[list[str]], chunking: str) -> dict[str, tuple[int, int, int]]:
    """type -> (TP, predicted, gold) from seqeval's own entity extraction."""
    true, pred = seqeval_entities(y_true, chunking), seqeval_entities(y_pred, chunking)
    out = {}
    for tag in sorted({e[0] for e in true | pred}):
        t, p = {e for e in true if e[0] == tag}, {e for e in pred if e[0] == tag}
        out[tag] = (len(t & p), len(p), len(t))
    return out


def our_counts(metric: NerSpanF1) -> dict[str, tuple[int, int, int]]:
    return {
        tag: (int(metric.tp[k]), int(metric.pred_count[k]), int(metric.gold_count[k]))
        for k, tag in enumerate(metric.types)
        if metric.pred_count[k] or metric.gold_count[k]
    }


def spans(chunking: str, *labels: str) -> set[tuple[str, int, int]]:
    return extract_spans([label[0] for label in labels], [label[2:] for label in labels], chunking)  # type: ignore


def scores(chunking: str, gold: list[str], pred: list[str]) -> dict[str, float]:
    metric = NerSpanF1(LABELS, chunking=chunking)  # type: ignore[arg-type]
    metric.update(torch.tensor([ids(*pred)]), torch.tensor([ids(*gold)]))
    return {k: v.item() for k, v in metric.compute().items()}


# ----------------------------------------------------------------------------- hand-worked (never skipped)


def test_strict_iob2_spans() -> None:
    def strict(*labels: str) -> set[tuple[str, int, int]]:
        return spans("strict_iob2", *labels)

    assert strict("B-PER", "I-PER", "O", "B-LOC") == {("PER", 0, 2), ("LOC", 3, 4)}
    assert strict("I-PER", "I-PER", "O") == set()  # no B: nothing
    assert strict("B-PER", "I-LOC", "I-LOC") == {("PER", 0, 1)}  # type change ends the entity, I-LOC dropped
    assert strict("B-PER", "B-PER", "I-PER") == {("PER", 0, 1), ("PER", 1, 3)}  # B always starts a new one
    assert strict("O", "B-ORG") == {("ORG", 1, 2)}  # entity at the end of the sequence
    assert strict() == set()


def test_conlleval_spans() -> None:
    def conll(*labels: str) -> set[tuple[str, int, int]]:
        return spans("conlleval", *labels)

    assert conll("B-PER", "I-PER", "O", "B-LOC") == {("PER", 0, 2), ("LOC", 3, 4)}
    assert conll("I-PER", "I-PER", "O") == {("PER", 0, 2)}  # I after the start (an implicit O) opens an entity
    assert conll("O", "I-LOC") == {("LOC", 1, 2)}  # I after O opens one, also at the end of the sequence
    assert conll("B-PER", "I-LOC", "I-LOC") == {("PER", 0, 1), ("LOC", 1, 3)}  # type change: a new entity
    assert conll("B-LOC", "I-PER", "B-PER") == {("LOC", 0, 1), ("PER", 1, 2), ("PER", 2, 3)}
    assert conll("B-PER", "B-PER", "I-PER") == {("PER", 0, 1), ("PER", 1, 3)}  # B always starts a new one
    assert conll("O", "I-ORG", "B-ORG", "I-ORG") == {("ORG", 1, 2), ("ORG", 2, 4)}
    assert conll("I-ORG", "O", "I-ORG") == {("ORG", 0, 1), ("ORG", 2, 3)}  # O ends an entity
    assert conll() == set() and conll("O", "O") == set()


def test_default_is_conlleval_and_the_chunkings_differ_both_ways() -> None:
    assert NerSpanF1(LABELS).chunking == "conlleval"
    # A stray I-LOC where gold has B-LOC: conlleval counts it (P = R = F1 = 1); strict drops it (P 1, R 1/2, F1 2/3).
    gold, pred = ["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "I-LOC"]
    assert scores("conlleval", gold, pred) == {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    strict = scores("strict_iob2", gold, pred)
    assert (strict["precision"], strict["recall"]) == (1.0, 0.5) and strict["f1"] == pytest.approx(2 / 3)
    # A stray I-ORG where gold has O: conlleval counts a false entity (P 1/2, R 1, F1 2/3); strict ignores it (1).
    gold, pred = ["B-PER", "O", "O"], ["B-PER", "O", "I-ORG"]
    conll = scores("conlleval", gold, pred)
    assert (conll["precision"], conll["recall"]) == (0.5, 1.0) and conll["f1"] == pytest.approx(2 / 3)
    assert scores("strict_iob2", gold, pred) == {"f1": 1.0, "precision": 1.0, "recall": 1.0}


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_ignore_index_and_logits(chunking: str) -> None:
    # words: [John] [Smith] [visited] [New York]; sub-token positions carry -100
    gold = torch.tensor([[-100, ID["B-PER"], -100, ID["I-PER"], ID["O"], ID["B-LOC"], -100, ID["I-LOC"], -100]])
    pred = torch.tensor([[0, ID["B-PER"], ID["B-ORG"], ID["I-PER"], ID["O"], ID["B-LOC"], ID["I-ORG"], ID["O"], 5]])
    metric = NerSpanF1(LABELS, per_type=True, chunking=chunking)  # type: ignore[arg-type]
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


def test_hand_worked_batch_counts() -> None:
    """Three sentences, counted by hand in both chunkings (entities never cross a sentence boundary)."""
    gold = [["B-PER", "I-PER", "O"], ["I-LOC", "O", "B-ORG"], ["B-LOC", "I-LOC"]]
    pred = [["B-PER", "I-PER", "I-PER"], ["I-LOC", "O", "I-ORG"], ["I-LOC", "I-LOC"]]
    expected = {
        # gold {PER(0,2)} {LOC(0,1) ORG(2,3)} {LOC(0,2)}; pred {PER(0,3)} {LOC(0,1) ORG(2,3)} {LOC(0,2)}
        "conlleval": {"PER": (0, 1, 1), "LOC": (2, 2, 2), "ORG": (1, 1, 1)},
        # gold {PER(0,2)} {ORG(2,3)} {LOC(0,2)}; pred {PER(0,3)} {} {}
        "strict_iob2": {"PER": (0, 1, 1), "LOC": (0, 0, 1), "ORG": (0, 0, 1)},
    }
    for chunking, counts in expected.items():
        metric = NerSpanF1(LABELS, chunking=chunking)  # type: ignore[arg-type]
        metric.update([ids(*row) for row in pred], [ids(*row) for row in gold])
        assert our_counts(metric) == counts, chunking
    out = NerSpanF1(LABELS)
    out.update([ids(*row) for row in pred], [ids(*row) for row in gold])
    assert out.compute()["f1"].item() == pytest.approx(3 / 4)  # P = 3/4, R = 3/4


# ----------------------------------------------------------------------------- against seqeval


@needs_seqeval
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_hand_worked_cases_are_seqevals(chunking: str) -> None:
    cases = [
        (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "I-LOC"]),
        (["B-PER", "O", "O"], ["B-PER", "O", "I-ORG"]),
        (["B-LOC", "I-LOC", "O"], ["B-LOC", "I-PER", "B-PER"]),
    ]
    for gold, pred in cases:
        want = seqeval_scores([gold], [pred], chunking)
        got = scores(chunking, gold, pred)
        assert got == pytest.approx(want, rel=1e-6), (gold, pred)
    assert seqeval_scores([["O", "O"], [], ["O"]], [["O", "O"], [], ["O"]], chunking) == {
        "f1": 0,
        "precision": 0,
        "recall": 0,
    }


def to_labels(rows: list[list[int]], keep_from: list[list[int]], labels: list[str]) -> list[list[str]]:
    return [[labels[r] for r, k in zip(row, keep) if k != -100] for row, keep in zip(rows, keep_from)]


@needs_seqeval
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sequences_match_seqeval_exactly(seed: int, chunking: str) -> None:
    rng = random.Random(seed)
    preds, golds = random_sequences(rng, 300, LABELS)
    metric = NerSpanF1(LABELS, per_type=True, chunking=chunking)  # type: ignore[arg-type]
    for start in range(0, len(preds), 32):  # several updates, ragged batches
        metric.update(preds[start : start + 32], golds[start : start + 32])
    y_true, y_pred = to_labels(golds, golds, LABELS), to_labels(preds, golds, LABELS)

    counts = seqeval_counts(y_true, y_pred, chunking)
    assert our_counts(metric) == counts
    assert sum(c[0] for c in counts.values()) > 50  # the test exercises true positives, not just errors

    out = metric.compute()
    for key, value in seqeval_scores(y_true, y_pred, chunking).items():
        assert out[key].item() == pytest.approx(value, rel=1e-6), key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = seqeval_metrics.classification_report(y_true, y_pred, output_dict=True, **seqeval_kwargs(chunking))
    for tag in counts:
        assert out[f"f1_{tag}"].item() == pytest.approx(report[tag]["f1-score"], rel=1e-6)
        assert out[f"precision_{tag}"].item() == pytest.approx(report[tag]["precision"], rel=1e-6)
        assert out[f"recall_{tag}"].item() == pytest.approx(report[tag]["recall"], rel=1e-6)
        assert int(metric.gold_count[metric.types.index(tag)]) == report[tag]["support"]
    assert out["f1"].item() == pytest.approx(report["micro avg"]["f1-score"], rel=1e-6)


@needs_seqeval
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_random_tensor_batches_with_other_label_order(chunking: str) -> None:
    """Padded [B, L] tensors (pad = -100), a label list in another order and an odd type name."""
    labels = ["B-MISC", "O", "I-MISC", "B-LOC", "I-LOC", "B-DATE_TIME", "I-DATE_TIME"]
    rng = random.Random(7)
    preds, golds = random_sequences(rng, 200, labels)
    width = max(len(g) for g in golds)
    pad = [[-100] * (width - len(g)) for g in golds]
    pred_t = torch.tensor([p + x for p, x in zip(preds, pad)])
    gold_t = torch.tensor([g + x for g, x in zip(golds, pad)])
    metric = NerSpanF1(labels, chunking=chunking)  # type: ignore[arg-type]
    metric.update(pred_t[:100], gold_t[:100])
    metric.update(pred_t[100:], gold_t[100:])
    y_true, y_pred = to_labels(golds, golds, labels), to_labels(preds, golds, labels)
    assert our_counts(metric) == seqeval_counts(y_true, y_pred, chunking)
    for key, value in seqeval_scores(y_true, y_pred, chunking).items():
        assert metric.compute()[key].item() == pytest.approx(value, rel=1e-6)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="'PER' is not an IOB2 label"):
        NerSpanF1(["O", "PER"])
    for label in ("PER", "B-", "BPER", "B--PER", "I-PER-"):
        with pytest.raises(ValueError, match="is not an IOB2 label"):
            NerSpanF1(["O", label])
    with pytest.raises(ValueError, match="no entity type"):
        NerSpanF1(["O"])
    with pytest.raises(ValueError, match="chunking must be one of .*'strict'"):
        NerSpanF1(LABELS, chunking="strict")  # type: ignore[arg-type]
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
