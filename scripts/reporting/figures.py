"""Drawing the figures from their numbers: an analysis figure (reporting/series.py's FigureData: curves on the left,
the bars at the end point on the right), the trade-off (reporting/tradeoff.py) and the efficiency figure
(reporting/efficiency.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reporting.efficiency import efficiency_curves, score_tag
from reporting.runs import Run
from reporting.series import FigureData, figure_data
from reporting.tradeoff import tradeoff_curves


def plot_figure(runs: Sequence[Run], tag: str, path: Path, title: str, ylabel: str) -> bool:
    """Draws `tag`'s figure into `path`; False if no run logged `tag`."""
    data = figure_data(runs, tag, title)
    if data is None:
        return False
    draw(data, path, ylabel)
    return True


def draw(data: FigureData, path: Path, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, curve in enumerate(data.curves):
        color = colors[i % len(colors)]
        marker = "." if len(curve.steps) < 30 else None
        curves.plot(curve.steps, curve.means, color=color, label=curve.label, marker=marker)
        curves.fill_between(curve.steps, curve.lower, curve.upper, color=color, alpha=0.2, linewidth=0)
    curves.set_xlabel("training batches (optimizer steps × tasks per step)")
    curves.set_ylabel(ylabel)
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    x = range(len(data.bars))
    bars.bar(x, [m for m, _ in data.bars], yerr=[s for _, s in data.bars], color=colors[: len(data.bars)], capsize=3)
    bars.set_xticks(list(x), data.names, rotation=30, ha="right", fontsize=8)
    if data.reference is not None:
        bars.axhline(data.reference, color="black", linestyle="--", linewidth=1, label="step 0 (pretrained)")
        bars.legend(fontsize=7, loc="lower right")
    if data.bottom is not None:
        bars.set_ylim(bottom=data.bottom)
    bars.set_title(data.bar_title, fontsize=9)
    fig.suptitle(data.title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tradeoff(runs: Sequence[Run], path: Path) -> bool:
    """The trade-off figure (Fig. 7a) into `path`; False if no run logged the cosine and the MTL loss."""
    curves = tradeoff_curves(runs)
    if not curves:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, curve in enumerate(curves):
        color = colors[i % len(colors)]
        ax.plot(curve.losses, curve.cosines, color=color, marker=".", label=curve.label)
        ax.plot(curve.losses[:1], curve.cosines[:1], color=color, marker="o", fillstyle="none", markersize=9)
        if curve.se is not None:
            lower = [c - s for c, s in zip(curve.cosines, curve.se)]
            upper = [c + s for c, s in zip(curve.cosines, curve.se)]
            ax.fill_between(curve.losses, lower, upper, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("MTL loss (mean over training tasks, on the probe batches)")
    ax.set_ylabel("mean task-gradient cosine")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    bands = "band: ± the cosine's standard error over probe examples; " if any(c.se for c in curves) else ""
    ax.set_title(f"Task-gradient cosine vs MTL loss along training\n({bands}open circle: step 0)", fontsize=8)
    _save(fig, path)
    return True


def plot_efficiency(runs: Sequence[Run], metric: str | None, path: Path) -> bool:
    """The efficiency figure (Fig. 7c / 8a) into `path`; False if no run logged a validation score."""
    tag = score_tag(runs, metric)
    curves = efficiency_curves(runs, tag) if tag else []
    if not curves:
        return False
    plt = _pyplot()
    axes_x = [("inner_steps", "inner (optimizer) steps"), ("task_batches", "task batches (gradient computations)")]
    if any(c.wall_s is not None for c in curves):
        axes_x.append(("wall_s", "training wall clock (s; no validation or probes)"))
    fig, axes = plt.subplots(1, len(axes_x), figsize=(4.2 * len(axes_x), 3.6), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (field, xlabel) in zip(axes, axes_x):
        for i, curve in enumerate(curves):
            x = getattr(curve, field)
            if x is None:
                continue
            color = colors[i % len(colors)]
            ax.plot(x, curve.means, color=color, marker=".", label=curve.label)
            lower = [m - s for m, s in zip(curve.means, curve.stds)]
            upper = [m + s for m, s in zip(curve.means, curve.stds)]
            ax.fill_between(x, lower, upper, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(tag)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{tag} against training cost (mean ± std over seeds)", fontsize=9)
    _save(fig, path)
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    fig.clf()
    _pyplot().close(fig)
