"""Token classification (NER) on a Hugging Face encoder: every token's hidden state feeds a linear head.

All languages share one head (paper §4.2). Labels are per sub-token with -100 where no loss is taken (the
datamodule puts a word's tag on its first sub-token only, as XTREME); scored with span F1 over the labelled
positions (`NerSpanF1`, seqeval's numbers), by default in seqeval's default (conlleval) chunking, as XTREME.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from datamodules.wikiann import WIKIANN_LABELS
from lightning_modules.metrics import NerSpanF1
from lightning_modules.metrics.ner import Chunking
from lightning_modules.models.base import TaskOutput, refuse_options
from lightning_modules.models.encoder import INPUT_KEYS, EncoderClassifier

IGNORE_INDEX = -100


class TokenClassifier(EncoderClassifier):
    """Encoder -> dropout -> linear head on every token -> cross-entropy over positions labelled != -100.

    Args:
        backbone / config: as `EncoderClassifier` (a HF model name or directory, or a `BertConfig` dict).
        label_names: id -> IOB2 label (default WikiANN's O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC).
        head: "shared" (paper §4.2) or "per_task" (with `tasks`).
        dropout: on the hidden states before the head (BertForTokenClassification's 0.1).
        chunking: how label sequences become entities for span F1: "conlleval" (seqeval's default mode, what
            XTREME reports for WikiANN) or "strict_iob2" (seqeval's mode="strict", scheme=IOB2).

    Batches: `input_ids`, `attention_mask`, optional `token_type_ids`, and `labels` [B, L] (-100 = ignored).
    `preds` are label ids [B, L]; validation reports span `f1`, `precision`, `recall` (fractions).
    """

    def __init__(
        self,
        backbone: str | None = None,
        config: dict[str, Any] | None = None,
        label_names: Sequence[str] = WIKIANN_LABELS,
        head: Literal["shared", "per_task"] = "shared",
        tasks: list[str] | None = None,
        dropout: float = 0.1,
        chunking: Chunking = "conlleval",
    ) -> None:
        label_names = list(label_names)
        NerSpanF1(label_names, chunking=chunking)  # fails early, naming the label or setting that is wrong
        super().__init__(
            backbone=backbone, config=config, num_labels=len(label_names), head=head, tasks=tasks, dropout=dropout
        )
        self.label_names = label_names
        self.chunking = chunking

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        missing = [k for k in ("input_ids", "labels") if k not in batch]
        if missing:
            raise KeyError(f"task '{task}': batch lacks {missing} (has {sorted(batch)})")
        labels = batch["labels"]
        if labels.shape != batch["input_ids"].shape:
            raise ValueError(
                f"task '{task}': token labels {tuple(labels.shape)} do not match input_ids "
                f"{tuple(batch['input_ids'].shape)}; is this a token-classification batch?"
            )
        head = self._head(task)
        inputs = {k: batch[k] for k in INPUT_KEYS if k in batch}
        hidden = self.encoder(**inputs).last_hidden_state
        logits = head(self.dropout(hidden))
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return TaskOutput(loss=loss, preds=logits.argmax(dim=-1), targets=labels)

    def eval_metrics(self, task: str, **options: Any) -> MetricCollection:
        refuse_options(self, task, options)
        return MetricCollection(
            {"span": NerSpanF1(self.label_names, ignore_index=IGNORE_INDEX, chunking=self.chunking)}
        )
