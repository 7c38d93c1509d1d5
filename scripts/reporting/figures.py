"""Drawing an analysis figure from its numbers (reporting/series.py's FigureData): curves on the left, the bars
at the end point on the right."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reporting.runs import Run
from reporting.series import FigureData, figure_data


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
