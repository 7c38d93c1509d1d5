"""scripts/synthetic_sweep.py: end points, the inside-the-triangle test and the end-point cosine of a sweep's runs,
against hand-worked points of the synthetic landscape."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from tests.test_registry import script

OPTIMA = {"t1": [0.0, 10.0], "t2": [0.0, 0.0], "t3": [10.0, 0.0]}


def main(argv: list[str]) -> int:
    script("fig3")  # imported by synthetic_sweep, as the scripts import each other
    return script("synthetic_sweep").main(argv)


def write_run(sweep: Path, point: str, seed: int, end: tuple[float, float], steps: int = 20) -> None:
    """A trajectory.csv (every row a `step` of an MTL-family run) that sits at `end` for its last half."""
    run = sweep / "runs" / point / f"seed{seed}" / "synthetic" / "mtl" / "version_0"
    run.mkdir(parents=True)
    rows = ["step,phase,task,x,y"]
    for step in range(steps):
        x, y = (20.0, 5.0) if step < steps // 2 else end
        rows.append(f"{step},step,,{x},{y}")
    (run / "trajectory.csv").write_text("\n".join(rows) + "\n")


def mean_pairwise_cosine(point: tuple[float, float]) -> float:
    """Each task's gradient points from its optimum to the point: the cosines of those unit directions."""
    units = [np.subtract(point, x) / np.linalg.norm(np.subtract(point, x)) for x in OPTIMA.values()]
    return float(np.mean([units[0] @ units[1], units[0] @ units[2], units[1] @ units[2]]))


def test_end_points_triangle_and_cosines(tmp_path: Path) -> None:
    sweep = tmp_path / "synthetic_mtl"
    write_run(sweep, "lr=0.05", 0, (4.0, 4.0))  # between the optima
    write_run(sweep, "lr=0.05", 1, (9.5, 0.4))  # inside the triangle, but in t3's minimum
    write_run(sweep, "lr=0.1", 0, (12.0, 3.0))  # outside
    write_run(sweep, "lr=0.1", 1, (5.0, 5.0))  # on the edge t1-t3: not strictly inside
    out = tmp_path / "summary.csv"
    assert main([str(sweep), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["point"], r["seed"], r["between_optima"], r["nearest_optimum"]) for r in rows] == [
        ("lr=0.05", "0", "True", "t2"), ("lr=0.05", "1", "False", "t3"),
        ("lr=0.1", "0", "False", "t3"), ("lr=0.1", "1", "False", "t1"),
    ]  # fmt: skip
    assert float(rows[1]["distance"]) == pytest.approx(math.hypot(0.5, 0.4), abs=1e-4)
    for row, end in zip(rows, [(4.0, 4.0), (9.5, 0.4), (12.0, 3.0), (5.0, 5.0)]):
        assert (float(row["end_x"]), float(row["end_y"])) == end
        assert float(row["cos_end"]) == pytest.approx(mean_pairwise_cosine(end), abs=1e-4)
        assert float(row["cos_second_half"]) == pytest.approx(mean_pairwise_cosine(end), abs=1e-4)
    assert float(rows[3]["cos_end"]) == pytest.approx(-1 / 3, abs=1e-4)  # on an edge: exactly the bound
    assert float(rows[0]["cos_end"]) < -1 / 3 and float(rows[1]["cos_end"]) < -1 / 3  # strictly inside
    assert not math.isclose(float(rows[2]["cos_end"]), -1 / 3)


def test_report_counts_and_refuses_an_empty_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "sr"
    write_run(sweep, "k=5", 0, (4.0, 4.0))
    write_run(sweep, "k=5", 1, (12.0, 3.0))
    main([str(sweep)])
    inside, outside = mean_pairwise_cosine((4.0, 4.0)), mean_pairwise_cosine((12.0, 3.0))
    assert f"| sr | 2 | 1 | {inside:.3f} | {outside:.3f} |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty")])
