"""Evaluation metrics of the paper's benchmarks as torchmetrics objects (DDP-safe states)."""

from lightning_modules.metrics.glue import glue_metrics
from lightning_modules.metrics.ner import NerSpanF1
from lightning_modules.metrics.qa import MLQAMetric, SquadMetric

__all__ = ["MLQAMetric", "NerSpanF1", "SquadMetric", "glue_metrics"]
