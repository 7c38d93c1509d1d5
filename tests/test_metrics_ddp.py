"""The metrics under DDP: on two gloo ranks, each updated with its half of the data, every metric (GLUE, NER span
F1, MLQA) computes on both ranks what one process computes on all of it.

One spawn for all metrics: starting the two ranks (each importing torch) is most of the cost, so it is `slow`.
Single-process agreement with scikit-learn / scipy / seqeval and the sum-reduced states are in the fast tests of
test_metrics_glue.py, test_metrics_ner.py and test_metrics_qa.py.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torchmetrics import Metric

from lightning_modules.metrics.glue import glue_metrics
from lightning_modules.metrics.ner import NerSpanF1
from lightning_modules.metrics.qa import MLQAMetric
from tests.ddp_helpers import run_two_ranks
from tests.metric_samples import NER_LABELS, glue_sample, random_sequences

pytestmark = pytest.mark.slow

WORLD = 2
# MLQA (zh) shards by hand: rank 0 scores "2008" vs "2008年" and "北京大学" vs "北京", rank 1 "《红楼梦》" vs "红楼梦".
MLQA_SHARDS = [(["2008", "北京大学"], [["2008年"], ["北京"]]), (["《红楼梦》"], [["红楼梦"]])]


def cases() -> dict[str, tuple[Callable[[], Any], list[tuple[Any, Any]]]]:
    """name -> (a new metric or metric collection, the update arguments of each rank)."""
    out: dict[str, tuple[Callable[[], Any], list[tuple[Any, Any]]]] = {}
    for task in ("cola", "mrpc", "stsb"):
        preds, target = glue_sample(task)
        out[task] = (partial(glue_metrics, task), [(preds[r::WORLD], target[r::WORLD]) for r in range(WORLD)])
    preds, golds = random_sequences(random.Random(3), 100, NER_LABELS)
    out["ner"] = (partial(NerSpanF1, NER_LABELS), [(preds[r::WORLD], golds[r::WORLD]) for r in range(WORLD)])
    out["mlqa_zh"] = (partial(MLQAMetric, "zh"), MLQA_SHARDS)
    return out


def values(metric: Metric | Any) -> dict[str, float]:
    return {key: value.item() for key, value in metric.compute().items()}


def _worker(rank: int, world: int, port: int, path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {}
        for name, (make, shards) in cases().items():
            metric = make()
            metric.update(*shards[rank])
            results[name] = values(metric)  # compute() syncs the states across ranks
        torch.save(results, f"{path}.rank{rank}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_compute_what_one_process_computes_on_all_the_data(tmp_path: Path) -> None:
    path = str(tmp_path / "out.pt")
    run_two_ranks(_worker, path)
    ranks = [torch.load(f"{path}.rank{r}") for r in range(WORLD)]
    expected = {}
    for name, (make, shards) in cases().items():
        metric = make()
        for shard in shards:
            metric.update(*shard)
        expected[name] = values(metric)
    assert set(expected) == {"cola", "mrpc", "stsb", "ner", "mlqa_zh"}
    for out in ranks:
        assert out.keys() == expected.keys()
        for name, want in expected.items():
            assert out[name].keys() == want.keys(), name
            for key, value in want.items():
                assert out[name][key] == pytest.approx(value, rel=1e-5), f"{name}/{key}"
    # Hand-worked MLQA (zh): EM 1 of 3 ("红楼梦" after 《》 removal); F1 per character 2/3, 2/3, 1.
    assert ranks[0]["mlqa_zh"]["exact_match"] == pytest.approx(100 / 3)
    assert ranks[0]["mlqa_zh"]["f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3, rel=1e-6)
    # each rank held part of the data: every value differs from what rank 0 computes alone, so a missing sync fails
    for name, (make, shards) in cases().items():
        alone = make()
        alone.update(*shards[0])
        assert all(v != pytest.approx(expected[name][k], rel=1e-3) for k, v in values(alone).items()), name
