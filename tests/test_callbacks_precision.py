"""Every analysis callback (gradient alignment, masked-LM loss, l2 drift, trajectory) under every precision a CPU
Trainer takes: the logged numbers are finite, and under 64-true they are those of 32-true up to float32 rounding.

MultiTaskModule may refuse to train with 16-bit weights (bf16-true): the callbacks must still measure correctly on
such weights, so these fits lift that refusal (`allow_any_precision`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from callbacks import GradientAlignment, L2Drift, MaskedLMLoss, TrajectoryRecorder
from datamodules.bible import BibleGenreTask
from datamodules.multitask import MultiTaskDataModule
from datamodules.synthetic import SyntheticTaskDataModule
from datamodules.task import TaskDataModule
from lightning_modules import multitask
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.algorithms.sequential_reptile import SequentialReptile
from lightning_modules.models.base import TaskModel, TaskOutput
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.models.synthetic import SyntheticLandscape
from lightning_modules.multitask import MultiTaskModule
from tests.bible_fixture import fixture_words
from tests.schema_fixtures import tiny_bert_config
from tests.trainer_fixtures import RecordingLogger

PRECISIONS = ["32-true", "64-true", "bf16-mixed", "bf16-true"]
TINY = {**tiny_bert_config(5 + len(fixture_words()), max_positions=32), "num_hidden_layers": 1}


@contextmanager
def allow_any_precision() -> Iterator[None]:
    """MultiTaskModule's refusal of 16-bit weights for training (where it has one) lifted."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(multitask, "check_training_precision", lambda plugin: None, raising=False)
        yield


def fit(precision: str, module: MultiTaskModule, data: MultiTaskDataModule, steps: int, root: Path,
        callbacks: list, lr: float) -> RecordingLogger:  # fmt: skip
    """`steps` SGD steps on CPU under `precision`; returns what the callbacks logged."""
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=lr)
    logger = RecordingLogger()
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, precision=precision, logger=logger, callbacks=callbacks,
        default_root_dir=root, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    with allow_any_precision():
        trainer.fit(module, datamodule=data)
    return logger


def logged(logger: RecordingLogger, prefixes: tuple[str, ...]) -> dict[tuple[int, str], float]:
    return {(step, k): v for step, m in logger.records for k, v in m.items() if k.startswith(prefixes)}  # type: ignore


def bible_data(tokenizer: Path, db: Path, cache: Path) -> MultiTaskDataModule:
    def task(lang: str, train: int) -> BibleGenreTask:
        return BibleGenreTask(
            lang, tokenizer=str(tokenizer), train_size=train, val_size=4, test_size=4, max_length=16, batch_size=4,
            db_path=str(db), cache_dir=str(cache),
        )  # fmt: skip

    return MultiTaskDataModule([task("en", 16), task("ar", 16)], zero_shot_tasks=[task("es", 0)], seed=1)


@pytest.fixture(scope="module")
def encoder_runs(
    bible_db: Path, bible_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[tuple[int, str], float]]:
    """precision -> what alignment, drift and masked-LM loss logged over 2 steps of a tiny encoder on the Bible."""
    root = tmp_path_factory.mktemp("encoder_precision")
    runs = {}
    for precision in PRECISIONS:
        torch.manual_seed(0)
        model = EncoderClassifier(config=TINY, num_labels=6)
        callbacks = [
            GradientAlignment(every_n_steps=1, probe_batch_size=4, heatmap=False),
            L2Drift(every_n_steps=1),
            MaskedLMLoss(
                every_n_steps=1,
                texts_per_language=4,
                max_length=16,
                probe_texts_per_language=8,
                probe_epochs=2,
                cache_dir=str(root / "probe"),
            ),  # fmt: skip
        ]
        data = bible_data(bible_tokenizer, bible_db, root / "data")
        logger = fit(
            precision, MultiTaskModule(model, MTL(tasks_per_step=2)), data, 2, root / precision, callbacks, 0.5
        )
        runs[precision] = logged(logger, ("align/", "drift/", "mlm/"))
    return runs


@pytest.mark.parametrize("precision", PRECISIONS)
def test_encoder_callbacks_log_finite_numbers(precision: str, encoder_runs: dict[str, Any]) -> None:
    values = encoder_runs[precision]
    keys = {k for _, k in values}
    assert {"align/cos_mean", "align/cos/en__ar", "drift/l2", "mlm/seen", "mlm/unseen", "mlm/es/loss"} <= keys
    assert sorted({step for step, _ in values}) == [0, 1, 2]
    assert all(math.isfinite(v) for v in values.values()), values
    assert values[(0, "drift/l2")] == 0.0  # measured from the weights the run started from, in their dtype
    assert values[(2, "drift/l2")] > 0.0


def test_encoder_callbacks_agree_between_64_and_32_bit(encoder_runs: dict[str, Any]) -> None:
    single, double = encoder_runs["32-true"], encoder_runs["64-true"]
    assert single.keys() == double.keys()
    for key, value in single.items():
        assert double[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("precision", PRECISIONS)
def test_landscape_callbacks_under_every_precision(precision: str, tmp_path: Path) -> None:
    """Alignment, drift and the trajectory on the 2-D landscape: finite, and for 64-true the 32-bit numbers."""
    results = {}
    for run in dict.fromkeys(["32-true", precision]):
        data = MultiTaskDataModule([SyntheticTaskDataModule(t) for t in ("t1", "t2", "t3")], seed=3)
        module = MultiTaskModule(SyntheticLandscape(), SequentialReptile(inner_steps=2, outer_lr=0.5))
        callbacks = [GradientAlignment(every_n_steps=1, heatmap=False), L2Drift(every_n_steps=1),
                     TrajectoryRecorder(plot=run == precision)]  # fmt: skip
        logger = fit(run, module, data, 4, tmp_path / run, callbacks, 0.5)
        rows = list(csv.DictReader(open(tmp_path / run / "trajectory.csv")))
        points = {(int(r["step"]), r["phase"]): (float(r["x"]), float(r["y"])) for r in rows}
        results[run] = (logged(logger, ("align/", "drift/")), points)
    values, points = results[precision]
    assert (tmp_path / precision / "trajectory.png").stat().st_size > 0
    assert len(values) == 5 * 5 and len(points) == 7  # 4 keys + drift at steps 0-4; start, 4 inner, 2 outer
    assert all(math.isfinite(v) for v in values.values())
    assert all(math.isfinite(c) for p in points.values() for c in p)
    if precision == "64-true":
        base_values, base_points = results["32-true"]
        for key, value in base_values.items():
            assert values[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        for key, point in base_points.items():
            assert points[key] == pytest.approx(point, rel=1e-6), key


class Features(TaskDataModule):
    """Float features and integer ids per example (the ids pick an embedding row, so a cast of them would fail)."""

    def __init__(self, name: str, seed: int) -> None:
        super().__init__(name=name, batch_size=4)
        self.seed = seed

    def setup(self, stage: str) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        x, ids, y = (
            torch.randn(12, 3, generator=gen),
            torch.randint(0, 5, (12,), generator=gen),
            torch.randn(12, generator=gen),
        )
        self.train_dataset = [{"x": x[i], "ids": ids[i], "y": y[i]} for i in range(12)]
        self.val_dataset = self.test_dataset = self.train_dataset[:4]


class FeatureModel(TaskModel):
    """Embedding(ids) + Linear(x), squared error; every parameter shared by both tasks."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.embed, self.linear = nn.Embedding(5, 1), nn.Linear(3, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        assert not batch["ids"].is_floating_point()
        out = (self.embed(batch["ids"]) + self.linear(batch["x"])).squeeze(-1)
        return TaskOutput(loss=((out - batch["y"].to(out)) ** 2).mean())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_alignment_casts_floating_probe_inputs_and_keeps_ids(precision: str, tmp_path: Path) -> None:
    cosines = {}
    for run in dict.fromkeys(["32-true", precision]):
        data = MultiTaskDataModule([Features("a", 1), Features("b", 2)], seed=0)
        module = MultiTaskModule(FeatureModel(), MTL(tasks_per_step=2))
        logger = fit(run, module, data, 2, tmp_path / run, [GradientAlignment(every_n_steps=1, heatmap=False)], 0.1)
        cosines[run] = logged(logger, ("align/cos_mean",))
    assert len(cosines[precision]) == 3 and all(math.isfinite(v) for v in cosines[precision].values())
    if precision == "64-true":
        assert cosines[precision] == pytest.approx(cosines["32-true"], rel=1e-5)
