"""GradientAlignment: cosines against the landscape's analytic gradients, logging, CSV, and no effect on training."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks.alignment import GradientAlignment, cosine_matrix, render_heatmap
from callbacks.periodic import StepCsv
from datamodules.multitask import MultiTaskDataModule
from datamodules.synthetic import SyntheticTaskDataModule
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.algorithms.sequential_reptile import SequentialReptile
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.models.synthetic import PAPER_OPTIMA, SyntheticLandscape
from lightning_modules.multitask import MultiTaskModule
from tests.trainer_fixtures import TOKEN_TASK_BERT, RecordingLogger, TokenTask, fit


def landscape_cosines(point: tuple[float, float]) -> dict[tuple[str, str], float]:
    """∇L_i(φ) = 40·exp(-0.2 r)·(φ - x_i)/r, so the cosine of two tasks is that of φ - x_i and φ - x_j."""
    d = {t: (point[0] - x[0], point[1] - x[1]) for t, x in PAPER_OPTIMA.items()}
    out = {}
    for a, b in (("t1", "t2"), ("t1", "t3"), ("t2", "t3")):
        (ax, ay), (bx, by) = d[a], d[b]
        out[(a, b)] = (ax * bx + ay * by) / (math.hypot(ax, ay) * math.hypot(bx, by))
    return out


def test_hand_worked_cosines_at_the_start_point() -> None:
    # φ = (20, 5): φ - x = (20,-5), (20,5), (10,5) -> 375/425, 175/sqrt(425·125), 225/sqrt(425·125)
    expected = landscape_cosines((20.0, 5.0))
    assert expected[("t1", "t2")] == pytest.approx(375 / 425)
    assert expected[("t1", "t3")] == pytest.approx(175 / math.sqrt(425 * 125))
    assert expected[("t2", "t3")] == pytest.approx(225 / math.sqrt(425 * 125))
    cos = cosine_matrix(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(cos, torch.tensor([[1, 0.5**0.5, 0], [0.5**0.5, 1, 0], [0, 0, 0]], dtype=torch.float64))


def test_logged_cosines_are_the_analytic_ones_at_the_evaluation_weights(tmp_path: Path) -> None:
    data = MultiTaskDataModule([SyntheticTaskDataModule(t) for t in ("t1", "t2", "t3")], seed=1234)
    module = MultiTaskModule(SyntheticLandscape(), SequentialReptile(inner_steps=3, outer_lr=0.5))
    points: dict[tuple[int, str], tuple[float, float]] = {}
    module.add_step_listener(lambda m, phase, tasks: points.__setitem__((m.global_step, phase), m.model.point()))
    recorder, tensorboard = RecordingLogger(), TensorBoardLogger(save_dir=tmp_path, name="", version="v")
    callback = GradientAlignment(every_n_steps=2, probe_batch_size=4)
    trainer = fit(module, data, 4, tmp_path, [callback], [tensorboard, recorder], lr=0.5)

    logged = {step: m for step, m in recorder.records if "align/cos_mean" in m}
    assert sorted(logged) == [0, 2, 4]
    # Steps 0 and 2 evaluate the anchor φ = (20, 5) (at step 2 the inner θ has moved); step 4 the φ set at step 3.
    anchors = {0: (20.0, 5.0), 2: (20.0, 5.0), 4: points[(3, "outer")]}
    moved = landscape_cosines(points[(2, "inner")])[("t1", "t3")]
    assert moved != pytest.approx(landscape_cosines((20, 5))[("t1", "t3")], abs=1e-4)  # θ ≠ φ is visible
    rows = list(csv.DictReader(open(Path(trainer.log_dir) / "alignment.csv")))
    assert len(rows) == 9
    for step, point in anchors.items():
        expected = landscape_cosines(point)
        for (a, b), value in expected.items():
            assert logged[step][f"align/cos/{a}__{b}"] == pytest.approx(value, abs=1e-6)
            (row,) = [r for r in rows if int(r["step"]) == step and (r["task_a"], r["task_b"]) == (a, b)]
            assert float(row["cos"]) == pytest.approx(value, abs=1e-6)
        assert logged[step]["align/cos_mean"] == pytest.approx(sum(expected.values()) / 3, abs=1e-6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "v"), size_guidance={"images": 0}).Reload()
    assert [e.step for e in events.Images("align/heatmap")] == [0, 2, 4]
    assert [e.step for e in events.Scalars("align/cos_mean")] == [0, 2, 4]


@pytest.mark.parametrize(
    "probe",
    [
        {"probe_batch_size": 6},
        # the standard error's batch-1 example passes run inside the same probe context (φ, eval mode, forked RNG)
        {"probe_batch_size": 4, "standard_error": True},
    ],
    ids=["cosines", "with_standard_error"],
)
def test_training_is_bitwise_identical_with_and_without_the_callback(tmp_path: Path, probe: dict) -> None:
    config = {**TOKEN_TASK_BERT, "hidden_dropout_prob": 0.2}
    results = []
    for with_callback in (False, True):
        pl.seed_everything(7)
        model = EncoderClassifier(config=config, head="per_task", tasks=["a", "b", "c"], dropout=0.3)
        module = MultiTaskModule(model, SequentialReptile(inner_steps=3, outer_lr=0.5))
        data = MultiTaskDataModule([TokenTask(n, seed=i) for i, n in enumerate("abc")], seed=1)
        callbacks = [GradientAlignment(every_n_steps=2, **probe)] if with_callback else []
        fit(module, data, 5, tmp_path / str(with_callback), callbacks, False, torch.optim.AdamW, lr=1e-2)
        assert module.model.training  # the probe restored train mode
        results.append(([p.detach().clone() for p in module.parameters()], module.algorithm.phi, torch.rand(1)))
    (params0, phi0, rng0), (params1, phi1, rng1) = results
    assert all(torch.equal(a, b) for a, b in zip(params0, params1))
    assert all(torch.equal(a, b) for a, b in zip(phi0, phi1))
    assert torch.equal(rng0, rng1)  # the global RNG stream was not consumed


def test_step_csv_resume_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    log = StepCsv("x.csv", ["step", "v"])
    log.path = tmp_path / "x.csv"
    log.append([[0, 1], [10, 2], [20, 3]])
    assert log.resume(10) is True
    assert [r[0] for r in csv.reader(open(log.path))] == ["step", "0", "10"]
    assert log.resume(15) is False
    assert log.resume(0) is False and len(list(csv.reader(open(log.path)))) == 1


def test_bad_setups_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every_n_steps"):
        GradientAlignment(every_n_steps=0)
    data = MultiTaskDataModule([SyntheticTaskDataModule("t1")])
    module = MultiTaskModule(SyntheticLandscape(), MTL(tasks_per_step=1))
    with pytest.raises(ValueError, match="at least two training tasks"):
        fit(module, data, 1, tmp_path, [GradientAlignment()], False)
    image = render_heatmap(["a", "b"], cosine_matrix(torch.eye(2)).numpy())
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"
