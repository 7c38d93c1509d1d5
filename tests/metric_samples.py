"""Sample data shared by the metric tests and their DDP-sync test (which needs it importable by spawned ranks)."""

from __future__ import annotations

import random

import torch

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def random_sequences(rng: random.Random, n: int, labels: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Random (often invalid) label-id sequences; gold has -100 at random sub-token positions."""
    golds, preds = [], []
    for _ in range(n):
        length = rng.randint(0, 14)
        gold = [rng.randrange(len(labels)) for _ in range(length)]
        # predictions: mostly copy gold with noise, so there are true positives as well as errors
        pred = [g if rng.random() < 0.6 else rng.randrange(len(labels)) for g in gold]
        gold = [g if rng.random() > 0.2 else -100 for g in gold]
        pred = [p if g != -100 or rng.random() < 0.5 else -100 for p, g in zip(pred, gold)]
        golds.append(gold)
        preds.append(pred)
    return preds, golds


def glue_sample(task: str, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (preds, targets) for a GLUE task: regression scores for STS-B, 2-class logits otherwise."""
    gen = torch.Generator().manual_seed(5)
    if task == "stsb":
        target = torch.rand(n, generator=gen) * 5
        return target + torch.randn(n, generator=gen), target
    return torch.randn(n, 2, generator=gen), torch.randint(0, 2, (n,), generator=gen)
