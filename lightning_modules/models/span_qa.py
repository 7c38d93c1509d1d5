"""Extractive QA on a Hugging Face encoder: start/end logits per token, turned into text answers.

The head is one linear layer with two outputs (start, end) shared by every language (paper §4.2), as
`BertForQuestionAnswering`. Training minimises the mean of the start and end cross-entropies. In evaluation
(batches carrying `offset_mapping`, built by `ExtractiveQATask` so that every batch holds whole examples) the
logits of all windows of a question are turned into one text answer (`best_answers`) and scored per task with
SQuAD v1.1 EM/F1 (TyDiQA gold passage, SQuAD) or, for a task whose data says it is MLQA (`MLQATask.metric_options`),
MLQA's rules for the context language.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from lightning_modules.metrics import MLQAMetric, SquadMetric
from lightning_modules.metrics.qa import MLQA_LANGUAGES
from lightning_modules.models.base import TaskOutput, refuse_options
from lightning_modules.models.encoder import INPUT_KEYS, EncoderClassifier


def best_answers(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    offsets: torch.Tensor,
    example_index: Sequence[int],
    contexts: Sequence[str],
    attention_mask: torch.Tensor | None = None,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> tuple[list[int], list[str]]:
    """The answer text of each example from the start/end logits of its windows (features).

    Per feature (as Hugging Face's `postprocess_qa_predictions` and XTREME's SQuAD post-processing): the
    `n_best` highest start and end logits among its real tokens (attention mask 1; question and special tokens
    included), then every pair whose tokens both lie in the context (offset >= 0), end >= start and
    end - start + 1 <= `max_answer_length` tokens is a candidate scored start + end logit. The example's answer
    is its best candidate over all its features, `context[offset[start][0]:offset[end][1]]`, or "" when none.

    Args:
        start_logits, end_logits: [F, L].
        offsets: [F, L, 2] character spans of context tokens in their context, (-1, -1) for other tokens.
        example_index: [F] the example of each feature; features of one example are contiguous.
        contexts: [F] the context of each feature's example.
        attention_mask: [F, L] (default: all positions real).
    Returns:
        (example indices in order of first appearance, their answer texts).
    """
    if n_best < 1 or max_answer_length < 1:
        raise ValueError(f"n_best and max_answer_length must be >= 1, got {n_best} and {max_answer_length}")
    n_features, length = start_logits.shape
    if end_logits.shape != (n_features, length) or offsets.shape != (n_features, length, 2):
        raise ValueError(
            f"start {tuple(start_logits.shape)}, end {tuple(end_logits.shape)} and offsets {tuple(offsets.shape)} "
            "must be [F, L], [F, L] and [F, L, 2]"
        )
    if len(example_index) != n_features or len(contexts) != n_features:
        raise ValueError(f"{n_features} features but {len(example_index)} example indices and {len(contexts)} contexts")
    start_logits, end_logits = start_logits.detach().float().cpu(), end_logits.detach().float().cpu()
    offsets = offsets.detach().cpu()
    real = torch.ones_like(start_logits, dtype=torch.bool)
    if attention_mask is not None:
        real = attention_mask.detach().cpu().bool()
    k = min(n_best, length)
    neg_inf = torch.tensor(float("-inf"))
    start_top, start_idx = torch.where(real, start_logits, neg_inf).topk(k, dim=-1)  # [F, k]
    end_top, end_idx = torch.where(real, end_logits, neg_inf).topk(k, dim=-1)
    in_context = offsets[..., 0] >= 0  # [F, L]
    start_ok = torch.gather(in_context, 1, start_idx) & torch.isfinite(start_top)
    end_ok = torch.gather(in_context, 1, end_idx) & torch.isfinite(end_top)
    span = end_idx[:, None, :] - start_idx[:, :, None] + 1  # [F, k_start, k_end]
    valid = start_ok[:, :, None] & end_ok[:, None, :] & (span >= 1) & (span <= max_answer_length)
    scores = torch.where(valid, start_top[:, :, None] + end_top[:, None, :], neg_inf).flatten(1)  # [F, k*k]
    best_score, best_pair = scores.max(dim=-1)

    order: list[int] = []
    best: dict[int, tuple[float, int, int]] = {}  # example -> (score, feature, flat pair)
    for feature, example in enumerate(int(e) for e in example_index):
        if example not in best:
            order.append(example)
            best[example] = (float("-inf"), -1, -1)
        score = float(best_score[feature])
        if score > best[example][0]:
            best[example] = (score, feature, int(best_pair[feature]))
    texts = []
    for example in order:
        score, feature, pair = best[example]
        if feature < 0:
            texts.append("")
            continue
        s, e = int(start_idx[feature, pair // k]), int(end_idx[feature, pair % k])
        texts.append(contexts[feature][int(offsets[feature, s, 0]) : int(offsets[feature, e, 1])])
    return order, texts


class SpanQA(EncoderClassifier):
    """Encoder -> (dropout) -> Linear(hidden, 2) -> start/end logits; one head for every task.

    Args:
        backbone / config: as `EncoderClassifier` (a HF model name or directory, or a `BertConfig` dict).
        n_best: start/end candidates per window in post-processing (20, as HF and XTREME).
        max_answer_length: longest answer in tokens (30).
        dropout: before the head; 0 as `BertForQuestionAnswering` (the encoder has its own dropout).

    Batches: `input_ids`, `attention_mask`, optional `token_type_ids`, `start_positions`, `end_positions`;
    evaluation batches also `offset_mapping`, `example_index`, `context` and `answers` (gold texts).
    """

    def __init__(
        self,
        backbone: str | None = None,
        config: dict[str, Any] | None = None,
        n_best: int = 20,
        max_answer_length: int = 30,
        dropout: float = 0.0,
    ) -> None:
        if n_best < 1:
            raise ValueError(f"n_best must be >= 1, got {n_best}")
        if max_answer_length < 1:
            raise ValueError(f"max_answer_length must be >= 1, got {max_answer_length}")
        super().__init__(backbone=backbone, config=config, num_labels=2, head="shared", dropout=dropout)
        self.n_best = n_best
        self.max_answer_length = max_answer_length

    def span_logits(self, task: str, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end logits [B, L]."""
        inputs = {k: batch[k] for k in INPUT_KEYS if k in batch}
        hidden = self.encoder(**inputs).last_hidden_state
        logits = self._head(task)(self.dropout(hidden))
        start, end = logits.unbind(dim=-1)
        return start, end

    def forward(self, task: str, batch: dict[str, Any]) -> TaskOutput:
        missing = [k for k in ("input_ids", "start_positions", "end_positions") if k not in batch]
        if missing:
            raise KeyError(f"task '{task}': batch lacks {missing} (has {sorted(batch)}); is this a QA batch?")
        start, end = self.span_logits(task, batch)
        loss = (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
        if "offset_mapping" not in batch:
            return TaskOutput(loss=loss)
        examples, texts = best_answers(
            start,
            end,
            batch["offset_mapping"],
            batch["example_index"].tolist(),
            batch["context"],
            batch.get("attention_mask"),
            self.n_best,
            self.max_answer_length,
        )
        first = {}
        for feature, example in enumerate(batch["example_index"].tolist()):
            first.setdefault(int(example), feature)
        golds = [batch["answers"][first[e]] for e in examples]
        return TaskOutput(loss=loss, preds=texts, targets=golds)

    def eval_metrics(self, task: str, mlqa_language: str | None = None, **options: Any) -> MetricCollection:
        """MLQA's rules for `mlqa_language` (given by an MLQA task's data), else SQuAD v1.1's."""
        refuse_options(self, task, options)
        if mlqa_language is not None and mlqa_language not in MLQA_LANGUAGES:
            raise ValueError(
                f"task '{task}': MLQA language {mlqa_language!r}; MLQA languages are {', '.join(MLQA_LANGUAGES)}"
            )
        return MetricCollection({"qa": MLQAMetric(mlqa_language) if mlqa_language is not None else SquadMetric()})

    def update_metrics(self, metrics: MetricCollection, output: TaskOutput) -> None:
        if output.preds is None:
            raise ValueError(
                "a QA evaluation batch needs offset_mapping, example_index, context and answers "
                "(use ExtractiveQATask's evaluation loaders)"
            )
        metrics.update(output.preds, output.targets)
