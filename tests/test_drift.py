"""L2Drift against hand-computed distances on the 2-D landscape and an independent norm on a tiny encoder."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from callbacks.drift import L2Drift
from datamodules.multitask import MultiTaskDataModule
from datamodules.synthetic import SyntheticTaskDataModule
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.algorithms.sequential_reptile import SequentialReptile
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.models.synthetic import PAPER_OPTIMA, SyntheticLandscape
from lightning_modules.multitask import MultiTaskModule
from tests.trainer_fixtures import TOKEN_TASK_BERT, RecordingLogger, TokenTask, fit

TASKS = ("t1", "t2", "t3")


def landscape_data() -> MultiTaskDataModule:
    return MultiTaskDataModule([SyntheticTaskDataModule(t) for t in TASKS], seed=3)


def sgd_step(point: tuple[float, float], lr: float) -> tuple[float, float]:
    """One MTL step on the sum of the three losses: ∇L_i = 40·exp(-0.2 r_i)·(φ - x_i)/r_i."""
    gx = gy = 0.0
    for x in PAPER_OPTIMA.values():
        dx, dy = point[0] - x[0], point[1] - x[1]
        r = math.hypot(dx, dy)
        gx += 40 * math.exp(-0.2 * r) * dx / r
        gy += 40 * math.exp(-0.2 * r) * dy / r
    return point[0] - lr * gx, point[1] - lr * gy


def test_mtl_drift_matches_hand_computed_sgd_steps(tmp_path: Path) -> None:
    module = MultiTaskModule(SyntheticLandscape(), MTL(tasks_per_step=3))
    recorder, callback = RecordingLogger(), L2Drift(every_n_steps=1)
    fit(module, landscape_data(), 2, tmp_path, [callback], recorder, lr=2.0)
    p1 = sgd_step((20.0, 5.0), 2.0)
    p2 = sgd_step(p1, 2.0)
    expected = {0: 0.0, 1: math.hypot(p1[0] - 20, p1[1] - 5), 2: math.hypot(p2[0] - 20, p2[1] - 5)}
    assert expected[2] > 1.0  # the steps are large enough for the check to mean something
    logged = {step: m["drift/l2"] for step, m in recorder.records if "drift/l2" in m}
    assert logged.keys() == expected.keys()
    for step, value in expected.items():
        assert logged[step] == pytest.approx(value, rel=1e-6, abs=1e-6)
    assert callback.csv.path == tmp_path / "drift.csv"  # a logger without a directory: default_root_dir
    rows = list(csv.DictReader(open(callback.csv.path)))
    assert [(int(r["step"]), pytest.approx(float(r["l2"]), rel=1e-6, abs=1e-6)) for r in rows] == sorted(
        expected.items()
    )


def test_the_last_step_is_measured_whatever_the_interval(tmp_path: Path) -> None:
    """5 steps, every 2: steps 0, 2, 4 and the finetuned model at step 5 (its drift: five hand-computed steps)."""
    module = MultiTaskModule(SyntheticLandscape(), MTL(tasks_per_step=3))
    recorder, callback = RecordingLogger(), L2Drift(every_n_steps=2)
    fit(module, landscape_data(), 5, tmp_path, [callback], recorder, lr=2.0)
    logged = {step: m["drift/l2"] for step, m in recorder.records if "drift/l2" in m}
    assert sorted(logged) == [0, 2, 4, 5]
    point = (20.0, 5.0)
    for _ in range(5):
        point = sgd_step(point, 2.0)
    assert logged[5] == pytest.approx(math.hypot(point[0] - 20, point[1] - 5), rel=1e-6)
    assert [int(r["step"]) for r in csv.DictReader(open(callback.csv.path))] == [0, 2, 4, 5]


def test_reptile_drift_is_measured_at_phi_not_at_the_inner_weights(tmp_path: Path) -> None:
    module = MultiTaskModule(SyntheticLandscape(), SequentialReptile(inner_steps=3, outer_lr=0.5))
    points: dict[tuple[int, str], tuple[float, float]] = {}
    module.add_step_listener(lambda m, phase, tasks: points.__setitem__((m.global_step, phase), m.model.point()))
    recorder = RecordingLogger()
    fit(module, landscape_data(), 4, tmp_path, [L2Drift(every_n_steps=1)], recorder, lr=2.0)
    logged = {step: m["drift/l2"] for step, m in recorder.records if "drift/l2" in m}
    phi = points[(3, "outer")]
    assert points[(2, "inner")] != (20.0, 5.0)
    assert logged[1] == 0.0 and logged[2] == 0.0  # φ is still the start point mid-trajectory
    assert logged[3] == pytest.approx(math.hypot(phi[0] - 20, phi[1] - 5), abs=1e-5) and logged[3] > 0.1
    assert logged[4] == pytest.approx(logged[3], abs=1e-6)


def test_encoder_drift_covers_the_encoder_only(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = EncoderClassifier(config=TOKEN_TASK_BERT, head="per_task", tasks=["a", "b"])
    initial = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    module = MultiTaskModule(model, MTL(tasks_per_step=2))
    data = MultiTaskDataModule([TokenTask(n, seed=i) for i, n in enumerate("ab")], seed=1)
    callback = L2Drift(every_n_steps=2)
    fit(module, data, 2, tmp_path, [callback], False, torch.optim.AdamW, lr=1e-2)
    expected = math.sqrt(sum(((p - initial[n]) ** 2).sum().item() for n, p in model.encoder.named_parameters()))
    assert expected > 0.1
    assert callback.last_value == pytest.approx(expected, rel=1e-5)
    assert set(callback.reference) == {f"encoder.{n}" for n in initial}


def test_a_model_without_a_reference_fails_clearly(tmp_path: Path) -> None:
    class NoReference(SyntheticLandscape):
        def pretrained_reference(self) -> dict[str, torch.Tensor]:
            return {}

    with pytest.raises(ValueError, match=r"pretrained_reference\(\) is empty"):
        fit(MultiTaskModule(NoReference(), MTL(tasks_per_step=1)), landscape_data(), 1, tmp_path, [L2Drift()], False)
    with pytest.raises(ValueError, match="every_n_steps"):
        L2Drift(every_n_steps=0)
