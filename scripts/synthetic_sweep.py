"""Where the runs of a synthetic sweep end, and with which task-gradient cosine: the check of Fig. 3's claim that
Sequential Reptile ends between the optima with the highest cosine.

    python scripts/sweep.py --config configs/synthetic/sequential_reptile.yaml \\
        --grid optimizer.init_args.lr=0.02,0.05,0.1,0.2 --grid model.algorithm.init_args.inner_steps=5,10,50 \\
        --seeds 0 1 2 --out sweeps/synthetic_sr
    python scripts/synthetic_sweep.py sweeps/synthetic_sr sweeps/synthetic_mtl --out docs/synthetic_sweep.csv

For every run (DIR/runs/<point-id>/seed<S>/.../trajectory.csv) as scripts/fig3.py reads it: the end point (mean
of the last 10 % of the evaluated points: φ for the Reptile family), its nearest optimum and the distance to it,
whether it ends between the optima (strictly inside their triangle and farther than 1 from each), and the mean
pairwise cosine of the analytic task gradients at the end point and over the
run's second half. Inside the triangle the cosine at a point is at most −1/3 (README, Fig. 3), so a run that ends
there cannot have the highest cosine of the methods that end in an optimum.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fig3 import cosine, end_point, evaluation_points, pair_cosines, task_gradient

from callbacks.landscape_plot import read_trajectory
from lightning_modules.models.synthetic import PAPER_OPTIMA
from pretrained.files import atomic_write_text

COLUMNS = [
    "sweep",
    "point",
    "seed",
    "end_x",
    "end_y",
    "nearest_optimum",
    "distance",
    "between_optima",
    "cos_end",
    "cos_second_half",
]
NEAR = 1.0  # a run that ends within this distance of an optimum is in that minimum (scripts/fig3.py's default)


def inside_triangle(point: np.ndarray, corners: Sequence[Sequence[float]], margin: float = 1e-9) -> bool:
    """Strictly inside the triangle (barycentric coordinates all above `margin`)."""
    a, b, c = (np.asarray(x, dtype=float) for x in corners)
    matrix = np.column_stack([b - a, c - a])
    u, v = np.linalg.solve(matrix, np.asarray(point, dtype=float) - a)
    return bool(u > margin and v > margin and 1 - u - v > margin)


def mean_cosine_at(point: np.ndarray, optima: dict[str, list[float]]) -> float:
    """Mean pairwise cosine of the task gradients at one point."""
    grads = {name: task_gradient(point, x) for name, x in optima.items()}
    return float(np.mean([cosine(grads[a], grads[b]) for a, b in itertools.combinations(sorted(optima), 2)]))


def summarise(sweep: Path, optima: dict[str, list[float]] = PAPER_OPTIMA) -> list[dict[str, object]]:
    """One row per run of a sweep directory, in point and seed order."""
    rows = []
    for path in sorted((sweep / "runs").glob("*/seed*/**/trajectory.csv")):
        point_dir = next(p for p in path.parents if p.parent.name == "runs")
        seed_dir = next(p for p in path.parents if p.parent == point_dir)
        points = evaluation_points(read_trajectory(path))
        end = end_point(points)
        half = pair_cosines(points, optima)
        distances = {name: float(np.linalg.norm(end - np.asarray(x))) for name, x in optima.items()}
        nearest = min(distances, key=distances.__getitem__)
        rows.append(
            {
                "sweep": sweep.name,
                "point": point_dir.name,
                "seed": int(seed_dir.name.removeprefix("seed")),
                "end_x": round(float(end[0]), 4),
                "end_y": round(float(end[1]), 4),
                "nearest_optimum": nearest,
                "distance": round(distances[nearest], 4),
                "between_optima": inside_triangle(end, list(optima.values())) and distances[nearest] > NEAR,
                "cos_end": round(mean_cosine_at(end, optima), 4),
                "cos_second_half": round(float(np.mean(list(half.values()))), 4),
            }
        )
    return rows


def report(rows: list[dict[str, object]]) -> str:
    """Per sweep: runs, how many end between the optima, the highest end-point cosine there and elsewhere."""
    lines = [
        "| sweep | runs | end between the optima | highest cosine there | highest cosine elsewhere |",
        "|---|---:|---:|---:|---:|",
    ]
    for sweep in dict.fromkeys(str(r["sweep"]) for r in rows):
        own = [r for r in rows if r["sweep"] == sweep]
        between = [float(r["cos_end"]) for r in own if r["between_optima"]]
        elsewhere = [float(r["cos_end"]) for r in own if not r["between_optima"]]
        best_in = f"{max(between):.3f}" if between else "–"
        best_out = f"{max(elsewhere):.3f}" if elsewhere else "–"
        lines.append(f"| {sweep} | {len(own)} | {len(between)} | {best_in} | {best_out} |")
    return "\n".join(lines)


def _csv_text(rows: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", type=Path, nargs="+", help="directories written by scripts/sweep.py")
    parser.add_argument("--out", type=Path, default=None, help="a CSV of every run (written atomically)")
    args = parser.parse_args(argv)
    rows = [row for sweep in args.sweeps for row in summarise(sweep)]
    if not rows:
        parser.error(f"no trajectory.csv under {', '.join(f'{s}/runs/<point>/seed<S>/' for s in args.sweeps)}")
    print(report(rows))
    if args.out is not None:
        text = _csv_text(rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
