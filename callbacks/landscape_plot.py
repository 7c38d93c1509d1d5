"""Drawing the 2-D landscape and a trajectory on it (trajectory.png and the Fig. 3 script)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pretrained.files import atomic_writer  # noqa: E402

BOUNDS = (-10.0, 25.0, -10.0, 20.0)  # x_min, x_max, y_min, y_max: the optima, (20, 5) and Appendix F inits


def mtl_loss_grid(optima: dict[str, list[float]], scale: float = 200.0, rate: float = 0.2, n: int = 200):
    x = np.linspace(BOUNDS[0], BOUNDS[1], n)
    y = np.linspace(BOUNDS[2], BOUNDS[3], n)
    xx, yy = np.meshgrid(x, y)
    zz = sum(-scale * np.exp(-rate * np.hypot(xx - ox, yy - oy)) for ox, oy in optima.values())
    return xx, yy, zz


def read_trajectory(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def draw_trajectory(ax, rows: list[dict[str, str]], optima: dict[str, list[float]], title: str = "") -> None:
    xx, yy, zz = mtl_loss_grid(optima)
    ax.contourf(xx, yy, zz, levels=30, cmap="viridis")
    ax.contour(xx, yy, zz, levels=15, colors="white", linewidths=0.3, alpha=0.5)
    inner = [r for r in rows if r["phase"] in ("inner", "step")]
    outer = [r for r in rows if r["phase"] == "outer"]
    # Inner trajectories start again from φ after every outer update: break the line there.
    xs, ys = [], []
    for r in rows:
        if r["phase"] == "outer":
            xs.append(float("nan"))
            ys.append(float("nan"))
        xs.append(float(r["x"]))
        ys.append(float(r["y"]))
    if inner:
        ax.plot(xs, ys, color="orange", lw=0.6, alpha=0.7)
    if outer:
        ax.plot([float(r["x"]) for r in outer], [float(r["y"]) for r in outer], color="red", lw=1.5, marker=".", ms=3)
    path = outer or inner
    ax.plot(float(rows[0]["x"]), float(rows[0]["y"]), "ws", ms=6)
    ax.plot(float(path[-1]["x"]), float(path[-1]["y"]), "r*", ms=12)
    for name, (ox, oy) in optima.items():
        ax.plot(ox, oy, "wx", ms=7)
        ax.annotate(name, (ox, oy), color="white", xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlim(BOUNDS[0], BOUNDS[1])
    ax.set_ylim(BOUNDS[2], BOUNDS[3])
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


def save_trajectory_png(csv_path: str | Path, png_path: str | Path, optima: dict[str, list[float]], title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    draw_trajectory(ax, read_trajectory(csv_path), optima, title)
    fig.tight_layout()
    with atomic_writer(png_path, "wb") as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)
