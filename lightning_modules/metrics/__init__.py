"""Evaluation metrics of the paper's benchmarks as torchmetrics objects (DDP-safe states)."""

from lightning_modules.metrics.correlation import MatthewsCorrelation, PearsonCorrelation, SpearmanCorrelation
from lightning_modules.metrics.glue import glue_metrics
from lightning_modules.metrics.ner import NerSpanF1
from lightning_modules.metrics.qa import MLQAMetric, SquadMetric

__all__ = [
    "MLQAMetric",
    "MatthewsCorrelation",
    "NerSpanF1",
    "PearsonCorrelation",
    "SpearmanCorrelation",
    "SquadMetric",
    "glue_metrics",
]
