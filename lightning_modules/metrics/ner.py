"""Span-level NER precision / recall / F1 over IOB2 labels, as seqeval computes them, in one of two chunkings.

`chunking="conlleval"` (the default) is seqeval's default mode, `f1_score(y_true, y_pred)`, which XTREME's WikiANN
evaluation calls: conlleval-style chunks, where `B-X` starts an entity, `I-X` continues one of type X, and an `I-X`
after `O` or after another type also starts one (a predicted `O I-LOC` is the entity LOC). `chunking="strict_iob2"`
is seqeval's `mode="strict", scheme=IOB2`: only `B-X` starts an entity and such a stray `I-X` is dropped. On
realistic predictions the two differ by a point or two of F1 either way, so runs compared must use the same one.

Two entities match when type, start and end agree. Micro scores: precision = TP / predicted, recall = TP / gold,
F1 = 2PR / (P + R), each 0 when its denominator is 0.

Inputs are label ids with an ignore index (-100 on sub-token and special-token positions): those positions are
dropped from both sequences before spans are extracted, so spans are over words. Only per-type integer counts
are kept (TP, predicted, gold), reduced with `sum`, so the metric is DDP-safe and exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torchmetrics import Metric

Span = tuple[int, int, int]  # (type index, start, end exclusive)
Chunking = Literal["conlleval", "strict_iob2"]


def _parse_label(label: str) -> tuple[str, str]:
    """IOB2 label -> (prefix, type): "O", or "B-<type>" / "I-<type>" with a type that neither starts nor ends with
    "-" (where seqeval's two modes would read different types)."""
    if label == "O":
        return "O", ""
    kind = label[2:] if isinstance(label, str) else ""
    if not kind or label[:2] not in ("B-", "I-") or kind != kind.strip("-"):
        raise ValueError(f"label {label!r} is not an IOB2 label (O, B-<type> or I-<type>)")
    return label[0], kind


def strict_iob2_spans(prefixes: Sequence[str], types: Sequence[int]) -> set[Span]:
    """Entities of one sequence under seqeval's strict IOB2: a `B-X` and the `I-X` right after it; a stray `I-`
    starts nothing."""
    spans: set[Span] = set()
    n, i = len(prefixes), 0
    while i < n:
        if prefixes[i] != "B":
            i += 1
            continue
        j = i + 1
        while j < n and prefixes[j] == "I" and types[j] == types[i]:
            j += 1
        spans.add((types[i], i, j))
        i = j
    return spans


def conlleval_spans(prefixes: Sequence[str], types: Sequence[int]) -> set[Span]:
    """Entities of one sequence under seqeval's default (conlleval) chunking: an entity ends at `B`, `O` or a type
    change, and starts at `B` or at an `I-X` that does not continue an entity of type X."""
    spans: set[Span] = set()
    start, kind = -1, -1
    for i, (prefix, t) in enumerate(zip([*prefixes, "O"], [*types, -1])):
        if start >= 0 and (prefix != "I" or t != kind):
            spans.add((kind, start, i))
            start = -1
        if prefix == "B" or (prefix == "I" and start < 0):
            start, kind = i, t
    return spans


CHUNKERS: dict[str, Callable[[Sequence[str], Sequence[int]], set[Span]]] = {
    "conlleval": conlleval_spans,
    "strict_iob2": strict_iob2_spans,
}


def extract_spans(prefixes: Sequence[str], types: Sequence[int], chunking: Chunking = "conlleval") -> set[Span]:
    """Entities of one sequence given per-position prefixes ('B', 'I', 'O') and type indices."""
    return CHUNKERS[chunking](prefixes, types)


def _as_rows(x: Any, name: str) -> list[list[int]]:
    """A [B, L] tensor or a list of int sequences -> list of lists of ints."""
    if isinstance(x, torch.Tensor):
        if x.dim() != 2:
            raise ValueError(f"{name} must be [batch, length] label ids, got shape {tuple(x.shape)}")
        if x.is_floating_point():
            raise TypeError(f"{name} must hold integer label ids, got {x.dtype}")
        return x.detach().cpu().tolist()
    return [list(row.tolist() if isinstance(row, torch.Tensor) else row) for row in x]


class NerSpanF1(Metric):
    """Micro span F1, precision and recall of IOB2 entities, as seqeval's `f1_score` (see the module docstring).

    Args:
        labels: id -> label list, e.g. ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"].
        ignore_index: target id of positions to skip (sub-tokens, special tokens).
        per_type: also return `f1_<type>`, `precision_<type>`, `recall_<type>` for every entity type.
        chunking: "conlleval" (seqeval's default mode, which XTREME reports) or "strict_iob2" (seqeval's
            mode="strict", scheme=IOB2).

    `update(preds, targets)`: preds are label ids [B, L] or logits [B, L, C]; targets label ids [B, L]
    (tensors, or lists of int sequences of matching lengths). Scores are fractions in [0, 1], as seqeval.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    tp: torch.Tensor
    pred_count: torch.Tensor
    gold_count: torch.Tensor

    def __init__(
        self,
        labels: Sequence[str],
        ignore_index: int = -100,
        per_type: bool = False,
        chunking: Chunking = "conlleval",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if chunking not in CHUNKERS:
            raise ValueError(
                f"chunking must be one of {sorted(CHUNKERS)} (seqeval's default mode or its strict IOB2 mode), "
                f"got {chunking!r}"
            )
        self.chunking = chunking
        labels = list(labels)
        if not labels:
            raise ValueError("NerSpanF1 needs the id -> label list")
        parsed = [_parse_label(label) for label in labels]
        self.labels = labels
        self.types = sorted({t for p, t in parsed if p != "O"})
        if not self.types:
            raise ValueError(f"labels {labels} contain no entity type (only O)")
        type_index = {t: k for k, t in enumerate(self.types)}
        self._prefix = [p for p, _ in parsed]
        self._type = [type_index[t] if p != "O" else -1 for p, t in parsed]
        self.ignore_index = ignore_index
        self.per_type = per_type
        n = len(self.types)
        self.add_state("tp", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("pred_count", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("gold_count", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")

    def _spans(self, ids: list[int], what: str, row: int) -> set[Span]:
        bad = [i for i in ids if not 0 <= i < len(self.labels)]
        if bad:
            raise ValueError(f"{what} of sequence {row} has label ids {bad[:5]} outside [0, {len(self.labels)})")
        return extract_spans([self._prefix[i] for i in ids], [self._type[i] for i in ids], self.chunking)

    def update(self, preds: Any, targets: Any) -> None:
        if isinstance(preds, torch.Tensor) and preds.is_floating_point():
            if preds.dim() != 3:
                raise ValueError(f"float preds must be logits [batch, length, classes], got shape {tuple(preds.shape)}")
            preds = preds.argmax(dim=-1)
        pred_rows, gold_rows = _as_rows(preds, "preds"), _as_rows(targets, "targets")
        if len(pred_rows) != len(gold_rows):
            raise ValueError(f"{len(pred_rows)} predicted sequences but {len(gold_rows)} target sequences")
        n = len(self.types)
        tp, n_pred, n_gold = [0] * n, [0] * n, [0] * n
        for row, (pred, gold) in enumerate(zip(pred_rows, gold_rows)):
            if len(pred) != len(gold):
                raise ValueError(f"sequence {row}: {len(pred)} predicted labels but {len(gold)} target labels")
            keep = [k for k, g in enumerate(gold) if g != self.ignore_index]
            pred_spans = self._spans([pred[k] for k in keep], "prediction", row)
            gold_spans = self._spans([gold[k] for k in keep], "target", row)
            for t, _, _ in pred_spans:
                n_pred[t] += 1
            for t, _, _ in gold_spans:
                n_gold[t] += 1
            for t, _, _ in pred_spans & gold_spans:
                tp[t] += 1
        device = self.tp.device
        self.tp += torch.tensor(tp, dtype=torch.long, device=device)
        self.pred_count += torch.tensor(n_pred, dtype=torch.long, device=device)
        self.gold_count += torch.tensor(n_gold, dtype=torch.long, device=device)

    @staticmethod
    def _scores(tp: torch.Tensor, pred: torch.Tensor, gold: torch.Tensor) -> dict[str, torch.Tensor]:
        """seqeval's arithmetic: P and R with 0 for a 0 denominator, F1 = 2PR / (P + R) (0 when P + R = 0)."""
        tp, pred, gold = tp.double(), pred.double(), gold.double()
        precision = torch.where(pred > 0, tp / pred.clamp(min=1), torch.zeros_like(tp))
        recall = torch.where(gold > 0, tp / gold.clamp(min=1), torch.zeros_like(tp))
        denom = precision + recall
        f1 = torch.where(denom > 0, 2 * precision * recall / torch.where(denom > 0, denom, 1.0), torch.zeros_like(tp))
        return {"f1": f1.float(), "precision": precision.float(), "recall": recall.float()}

    def compute(self) -> dict[str, torch.Tensor]:
        out = self._scores(self.tp.sum(), self.pred_count.sum(), self.gold_count.sum())
        if self.per_type:
            per = self._scores(self.tp, self.pred_count, self.gold_count)
            for k, name in enumerate(self.types):
                for key, values in per.items():
                    out[f"{key}_{name}"] = values[k]
        return out
