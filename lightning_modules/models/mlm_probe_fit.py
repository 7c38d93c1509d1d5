"""The probe head of the masked-LM measurement, for a backbone shipped without an MLM head: fitted once on masked
text through the frozen pretrained encoder (transform and bias; the decoder is the frozen pretrained input
embedding), cached on disk under a key of everything that decides it, then frozen. See `mlm_probe.py` for the
head, the masking and the loss."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_modules.models.mlm_probe import IGNORE, MLMHead, mask_texts, target_rows, vocabulary_rows
from pretrained.files import atomic_path
from pretrained.fingerprints import content_key

log = logging.getLogger(__name__)

PROBE_VERSION = 1  # bump when the fitting procedure changes, so cached heads are refitted


# -------------------------------------------------------------------------------------------------- probe
@dataclass(frozen=True)
class ProbeSettings:
    """How the probe head is fitted (part of its cache key).

    texts_per_language: fitting texts per language (never the held-out ones). epochs, batch_tokens, lr:
    Adam over the transform and bias, on the masked positions' hidden states (computed once).
    holdout: fraction of those positions kept out of fitting to report the probe's quality."""

    texts_per_language: int = 256
    epochs: int = 3
    batch_tokens: int = 512
    lr: float = 2e-3
    holdout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.texts_per_language < 1 or self.epochs < 1 or self.batch_tokens < 1:
            raise ValueError(f"probe settings must be positive: {self}")
        if not 0.0 <= self.holdout < 1.0 or self.lr <= 0:
            raise ValueError(f"probe holdout must be in [0, 1) and lr > 0: {self}")


def state_fingerprint(module: nn.Module) -> str:
    """SHA-256 (16 hex) of a module's parameters and buffers (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def probe_cache_key(
    reference_encoder: nn.Module,
    texts: dict[str, list[str]],
    tokenizer_fingerprint: str,
    max_length: int,
    mask_prob: float,
    settings: ProbeSettings,
) -> dict[str, Any]:
    text_digest = hashlib.sha256(json.dumps(texts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return {
        "version": PROBE_VERSION,
        "encoder": state_fingerprint(reference_encoder),
        "texts": text_digest,
        "languages": sorted(texts),
        "tokenizer": tokenizer_fingerprint,
        "max_length": max_length,
        "mask_prob": mask_prob,
        "settings": asdict(settings),
    }


def fit_probe_head(
    reference_encoder: nn.Module,
    tokenizer: Any,
    texts: dict[str, list[str]],
    max_length: int = 128,
    mask_prob: float = 0.15,
    settings: ProbeSettings = ProbeSettings(),
    batch_size: int = 32,
) -> tuple[MLMHead, dict[str, Any]]:
    """Fit the probe head's transform and bias on masked `texts` (language -> texts) through the frozen
    `reference_encoder`; the decoder is its input word embedding (rows as in the encoder). Returns the frozen
    head and a report (losses before/after on the fitting and held-out positions, seconds)."""
    start = time.perf_counter()
    encoder = reference_encoder.eval()
    row_ids, id_to_row = vocabulary_rows(encoder, tokenizer.unk_token_id)
    config = encoder.config
    hidden_size = config.hidden_size
    act = config.hidden_act if isinstance(config.hidden_act, str) else "gelu"
    head = MLMHead(hidden_size, len(row_ids), act, getattr(config, "layer_norm_eps", 1e-12))
    device = next(encoder.parameters()).device
    features, targets = [], []
    with torch.no_grad():
        for lang in sorted(texts):
            generator = torch.Generator().manual_seed(_seed(settings.seed, "probe", lang))
            for batch in mask_texts(texts[lang], tokenizer, generator, max_length, mask_prob, batch_size):
                batch = batch.to(device)
                hidden = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
                rows = target_rows(batch.labels, id_to_row)
                where = rows != IGNORE
                features.append(hidden[where].float().cpu())
                targets.append(rows[where].cpu())
        x, y = torch.cat(features), torch.cat(targets)
        if len(y) < 2:
            raise ValueError("fit_probe_head: too few masked tokens to fit a probe head")
        head.decoder.copy_(encoder.get_input_embeddings().weight.detach().float().cpu())
        head.dense.weight.copy_(torch.eye(hidden_size))  # start from the identity transform
        head.dense.bias.zero_()
        counts = torch.bincount(y, minlength=len(row_ids)).double()
        head.bias.copy_(torch.log((counts + 0.5) / (counts.sum() + 0.5 * len(row_ids))).float())  # unigram prior
    head.decoder.requires_grad_(False)
    generator = torch.Generator().manual_seed(_seed(settings.seed, "probe-fit"))
    order = torch.randperm(len(y), generator=generator)
    n_hold = min(len(y) - 1, int(round(settings.holdout * len(y))))
    hold, fit = order[:n_hold], order[n_hold:]

    def mean_loss(index: torch.Tensor) -> float:
        if len(index) == 0:
            return float("nan")
        with torch.no_grad():
            total = sum(
                float(F.cross_entropy(head(x[i]), y[i], reduction="sum"))
                for i in index.split(settings.batch_tokens * 4)
            )
        return total / len(index)

    report: dict[str, Any] = {"tokens_fit": len(fit), "tokens_holdout": len(hold)}
    report["holdout_loss_before"] = mean_loss(hold)
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    steps = settings.epochs * math.ceil(len(fit) / settings.batch_tokens)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / steps)  # linear decay to 0
    head.train()
    for _ in range(settings.epochs):
        total = 0.0
        for index in fit[torch.randperm(len(fit), generator=generator)].split(settings.batch_tokens):
            loss = F.cross_entropy(head(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(index)
        report["fit_loss_last_epoch"] = total / len(fit)  # running mean while fitting
    head.eval()
    report["holdout_loss_after"] = mean_loss(hold)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return head.requires_grad_(False), report


def load_or_fit_probe_head(
    reference_encoder: nn.Module,
    tokenizer: Any,
    texts: dict[str, list[str]],
    tokenizer_fingerprint: str,
    cache_dir: str | os.PathLike,
    max_length: int = 128,
    mask_prob: float = 0.15,
    settings: ProbeSettings = ProbeSettings(),
) -> tuple[MLMHead, dict[str, Any]]:
    """The probe head from `cache_dir` if one was fitted with the same key (encoder weights, vocabulary, texts,
    tokenizer, masking, settings), else fitted now and cached. The decoder is never stored: it is the
    reference encoder's input embedding. Returns (head, record) where record has the key, the fitting report
    and `cached` (True when read from disk)."""
    key = probe_cache_key(reference_encoder, texts, tokenizer_fingerprint, max_length, mask_prob, settings)
    digest = content_key(key)
    path = Path(cache_dir).expanduser() / f"probe-{digest}.pt"
    row_ids, _ = vocabulary_rows(reference_encoder, tokenizer.unk_token_id)
    config = reference_encoder.config
    act = config.hidden_act if isinstance(config.hidden_act, str) else "gelu"
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored["key"] == json.loads(json.dumps(key)):
                head = MLMHead(config.hidden_size, len(row_ids), act, getattr(config, "layer_norm_eps", 1e-12))
                state = dict(stored["state"])
                state["decoder"] = reference_encoder.get_input_embeddings().weight.detach().float().cpu()
                head.load_state_dict(state)
                return head.requires_grad_(False).eval(), {"key": key, "report": stored["report"], "cached": True}
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            log.warning("ignoring unreadable probe head cache %s (%s); fitting again", path, err)
    head, report = fit_probe_head(reference_encoder, tokenizer, texts, max_length, mask_prob, settings)
    state = {k: v for k, v in head.state_dict().items() if k != "decoder"}
    with atomic_path(path) as tmp:
        torch.save({"key": key, "state": state, "report": report}, tmp)
    rank_zero_info(
        f"masked-LM probe head fitted in {report['seconds']:.0f} s on {report['tokens_fit']} masked tokens "
        f"(held-out loss {report['holdout_loss_before']:.2f} -> {report['holdout_loss_after']:.2f}); cached in {path}"
    )
    return head, {"key": key, "report": report, "cached": False}


def _seed(base: int, *parts: str) -> int:
    """A stable 63-bit seed from an integer and strings (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(":".join([str(base), *parts]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
