"""Paper Fig. 3 from the synthetic runs: a panel per method (trajectory on the MTL loss contours) and the
heatmap of the average pairwise cosine between task gradients, plus a Markdown table of the end points.

    python scripts/fig3.py --runs logs/synthetic --out docs/fig3.png --table docs/fig3.md

The methods are the configs of configs/synthetic (lightning_modules/algorithms/registry.py), in the report's order,
with its labels. For each it reads the newest `<runs>/<method>/version_*/trajectory.csv`. The cosines are computed
here from the analytic task gradients at the points of the trajectory (φ for the Reptile family, where the
`outer` rows are; the iterates for the others), averaged over the second half of the run.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from callbacks.landscape_plot import draw_trajectory, read_trajectory  # noqa: E402
from lightning_modules.algorithms import registry  # noqa: E402
from lightning_modules.models.synthetic import PAPER_OPTIMA  # noqa: E402

COLUMNS = 4  # panels per row of the figure


def methods(configs: Path | None = None) -> list[tuple[str, str]]:
    """(config name, label) of every synthetic config, in the report's order."""
    return [(m.key, m.label) for m in registry.methods("synthetic", configs)]


def task_gradient(point: np.ndarray, optimum: list[float], scale: float = 200.0, rate: float = 0.2) -> np.ndarray:
    diff = point - np.asarray(optimum)
    dist = float(np.linalg.norm(diff))
    if dist == 0.0:
        return np.zeros(2)
    return scale * rate * math.exp(-rate * dist) * diff / dist


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def evaluation_points(rows: list[dict[str, str]]) -> np.ndarray:
    outer = [r for r in rows if r["phase"] == "outer"]
    chosen = outer if len(outer) > 1 else rows
    return np.array([[float(r["x"]), float(r["y"])] for r in chosen])


def pair_cosines(points: np.ndarray, optima: dict[str, list[float]]) -> dict[str, float]:
    half = points[len(points) // 2 :]
    result = {}
    for a, b in itertools.combinations(sorted(optima), 2):
        cos = [cosine(task_gradient(p, optima[a]), task_gradient(p, optima[b])) for p in half]
        result[f"{a}-{b}"] = float(np.mean(cos))
    return result


def end_point(points: np.ndarray) -> np.ndarray:
    """Mean of the last 10 % of the points: SGD on these cone-shaped wells oscillates around a minimum."""
    return points[-max(1, len(points) // 10) :].mean(axis=0)


def newest_run(root: Path, method: str) -> Path | None:
    runs = sorted((root / method).glob("version_*/trajectory.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    return runs[-1] if runs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("logs/synthetic"))
    parser.add_argument("--out", type=Path, default=Path("docs/fig3.png"))
    parser.add_argument("--table", type=Path, default=None)
    parser.add_argument("--near", type=float, default=1.0, help="distance that counts as 'in' a minimum")
    parser.add_argument("--configs", type=Path, default=None, help="the configs root (default: the repository's)")
    args = parser.parse_args()

    optima = PAPER_OPTIMA
    found = [(key, label, newest_run(args.runs, key)) for key, label in methods(args.configs)]
    found = [(key, label, path) for key, label, path in found if path is not None]
    if not found:
        raise SystemExit(f"no trajectory.csv under {args.runs}/<method>/version_*/")

    rows_of_panels = math.ceil((len(found) + 1) / COLUMNS)  # a panel per method, then the heatmap
    fig = plt.figure(figsize=(4 * COLUMNS, 4 * rows_of_panels))
    cos_rows, lines = [], []
    pairs = [f"{a}-{b}" for a, b in itertools.combinations(sorted(optima), 2)]
    for idx, (_key, label, path) in enumerate(found):
        rows = read_trajectory(path)
        ax = fig.add_subplot(rows_of_panels, COLUMNS, idx + 1)
        draw_trajectory(ax, rows, optima, f"({chr(97 + idx)}) {label}")
        points = evaluation_points(rows)
        cos = pair_cosines(points, optima)
        cos_rows.append([cos[p] for p in pairs])
        end = end_point(points)
        dists = {name: float(np.linalg.norm(end - np.asarray(x))) for name, x in optima.items()}
        nearest = min(dists, key=dists.get)
        verdict = (
            f"in the minimum at {nearest} {tuple(optima[nearest])}"
            if dists[nearest] <= args.near
            else "not in a minimum"
        )
        mean_cos = float(np.mean([cos[p] for p in pairs]))
        lines.append(f"| {label} | ({end[0]:.2f}, {end[1]:.2f}) | {dists[nearest]:.2f} | {verdict} | {mean_cos:.3f} |")

    ax = fig.add_subplot(rows_of_panels, COLUMNS, len(found) + 1)
    matrix = np.array(cos_rows)
    im = ax.imshow(matrix, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(pairs)), pairs)
    ax.set_yticks(range(len(found)), [label for _, label, _ in found])
    for i, j in itertools.product(range(matrix.shape[0]), range(matrix.shape[1])):
        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"({chr(97 + len(found))}) mean pairwise cosine", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    table = "\n".join(
        [
            "| method | end point | distance to nearest optimum | verdict | mean pairwise cosine (2nd half) |",
            "|---|---|---|---|---|",
            *lines,
        ]
    )
    print(table)
    if args.table:
        args.table.write_text(table + "\n")


if __name__ == "__main__":
    main()
