"""scripts/report.py's trade-off (Fig. 7a) and efficiency (Fig. 7c / 8a) figures from generated run directories:
the numbers they are drawn from (means over seeds, the standard-error band, the step matching), not matplotlib."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from tests.test_report import report, write_run

SUMMARY = ["step", "cos_mean", "cos_mean_se", "mtl_loss"]


def write_csv(path: Path, header: list[str], rows: list[list[float]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def alignment_run(root: Path, method: str, seed: int, rows: list[list[float]]) -> Path:
    """A run whose GradientAlignment wrote alignment.csv (pairs) and alignment_summary.csv (no event files)."""
    run = root / method / f"version_{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"seed_everything": seed}))
    write_csv(run / "alignment.csv", ["step", "task_a", "task_b", "cos"], [[r[0], "en", "ar", r[1]] for r in rows])
    write_csv(run / "alignment_summary.csv", SUMMARY, rows)
    return run


def load(root: Path) -> list:
    return [report.load_run(d) for d in report.find_runs([root])]


def test_tradeoff_numbers_from_the_csvs(tmp_path: Path) -> None:
    nan = math.nan
    alignment_run(tmp_path, "mtl", 0, [[0, 0.2, 0.02, 1.8], [100, 0.3, 0.04, 1.0], [150, 0.1, 0.02, 0.6]])
    alignment_run(tmp_path, "mtl", 1, [[0, 0.2, 0.02, 1.8], [100, 0.1, 0.02, 1.2], [150, 0.3, 0.04, 0.8]])
    alignment_run(tmp_path, "sequential_reptile", 0, [[0, 0.2, 0.02, 1.8], [100, 0.05, 0.01, 1.4]])
    alignment_run(tmp_path, "reptile", 0, [[0, 0.2, nan, 1.8], [100, 0.01, nan, 1.7]])  # SE off: no band
    old = tmp_path / "gradnorm" / "version_0"  # written before the MTL loss was logged: not on the figure
    old.mkdir(parents=True)
    write_csv(old / "alignment.csv", ["step", "task_a", "task_b", "cos"], [[0, "en", "ar", 0.2]])

    curves = report.tradeoff_curves(load(tmp_path))
    assert [c.label for c in curves] == ["MTL (n=2)", "Reptile (n=1)", "Seq. Reptile (n=1)"]
    mtl, reptile, seq = curves
    assert mtl.steps == [0, 100, 150]
    assert mtl.losses == pytest.approx([1.8, 1.1, 0.7])
    assert mtl.cosines == pytest.approx([0.2, 0.2, 0.2])
    assert mtl.se == pytest.approx([0.02, 0.03, 0.03])  # mean of the runs' SEs: the probes are the same in each
    assert reptile.se is None and reptile.cosines == pytest.approx([0.2, 0.01])
    assert seq.steps == [0, 100] and seq.losses == pytest.approx([1.8, 1.4]) and seq.se == pytest.approx([0.02, 0.01])


def test_tradeoff_uses_the_steps_every_run_measured(tmp_path: Path) -> None:
    alignment_run(tmp_path, "mtl", 0, [[0, 0.2, 0.02, 1.8], [100, 0.3, 0.04, 1.0], [150, 0.1, 0.02, 0.6]])
    alignment_run(tmp_path, "mtl", 1, [[0, 0.4, 0.02, 1.6], [100, 0.1, 0.02, 1.2]])  # stopped early
    (curve,) = report.tradeoff_curves(load(tmp_path))
    assert curve.steps == [0, 100] and curve.cosines == pytest.approx([0.3, 0.2])


def val_run(root: Path, method: str, seed: int, scores: dict[int, float], tasks_per_step: int | None = None) -> Path:
    scalars = {"val/avg/accuracy": list(scores.items()), "val/avg/loss": [(s, 1.0) for s in scores]}
    return write_run(root / method / f"version_{seed}", seed, scalars, tasks_per_step=tasks_per_step)


def test_efficiency_numbers_from_the_csvs(tmp_path: Path) -> None:
    """Validation is logged at one less than the optimizer steps it follows (Lightning's convention): the scores
    logged at 4 and 9 go with the efficiency rows of steps 5 and 10."""
    header = ["step", "wall_s", "inner_steps", "task_batches"]
    for seed, (scores, wall_per_step) in enumerate([({4: 0.4, 9: 0.6}, 0.5), ({4: 0.5, 9: 0.8}, 0.7)]):
        run = val_run(tmp_path, "mtl", seed, scores, tasks_per_step=2)
        write_csv(run / "efficiency.csv", header, [[s, wall_per_step * s, s, 2 * s] for s in range(1, 11)])
    run = val_run(tmp_path, "sequential_reptile", 0, {9: 0.7, 19: 0.9})
    write_csv(run / "efficiency.csv", header, [[s, 0.2 * s, s, s] for s in range(1, 21)])
    val_run(tmp_path, "reptile", 0, {9: 0.3})  # no Efficiency callback: counts from the steps, no wall clock

    runs = load(tmp_path)
    assert report.score_tag(runs, None) == "val/avg/accuracy" and report.score_tag(runs, "f1") is None
    mtl, reptile, seq = report.efficiency_curves(runs, "val/avg/accuracy")
    assert mtl.label == "MTL (n=2)"
    assert mtl.inner_steps == [5, 10] and mtl.task_batches == [10, 20]
    assert mtl.wall_s == pytest.approx([3.0, 6.0])  # mean of 0.5 and 0.7 s per step
    assert mtl.means == pytest.approx([0.45, 0.7]) and mtl.stds == pytest.approx([0.0707107, 0.1414214])
    assert reptile.inner_steps == [10] and reptile.task_batches == [10] and reptile.wall_s is None
    assert seq.inner_steps == [10, 20] and seq.task_batches == [10, 20] and seq.wall_s == pytest.approx([2.0, 4.0])
    assert seq.means == [pytest.approx(0.7), pytest.approx(0.9)] and seq.stds == [0.0, 0.0]


def test_report_writes_both_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    for seed in (0, 1):
        run = val_run(logs, "sequential_reptile", seed, {4: 0.4 + seed / 10, 9: 0.6})
        write_csv(run / "alignment_summary.csv", SUMMARY, [[0, 0.2, 0.02, 1.8], [10, 0.1, 0.01, 1.0]])
        write_csv(run / "efficiency.csv", ["step", "wall_s", "inner_steps", "task_batches"],
                  [[s, 0.1 * s, s, s] for s in range(1, 11)])  # fmt: skip
    out = tmp_path / "out"
    assert report.main([str(logs), "--out", str(out), "--paper", "none"]) == 0
    assert (out / "fig7a_tradeoff.png").stat().st_size > 0
    assert (out / "fig7c_efficiency.png").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out
