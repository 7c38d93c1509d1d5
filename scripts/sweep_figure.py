"""A score (and the task-gradient cosine) against one setting of a sweep: the paper's Fig. 7b (strength of
alignment: cosine and score against the inner learning rate α) and Fig. 8b (score against the number of inner
steps K), from a directory written by scripts/sweep.py.

    python scripts/sweep_figure.py sweeps/offline_alpha --key optimizer.init_args.lr \\
        --metric test/avg/accuracy --out docs/offline/alpha_sweep/fig7b_alpha.png
    python scripts/sweep_figure.py sweeps/offline_k --key model.algorithm.init_args.inner_steps \\
        --metric test/avg/accuracy --out docs/offline/k_sweep/fig8b_k.png

For each value of `--key`: the metric of every finished run (DIR/runs/<point>/seed<S>/done.json, as sweep.py
wrote it), mean ± std over the runs (seeds and any other grid key), and, where the runs logged it, the cosine at
their last alignment probe (`alignment_summary.csv`: `cos_mean`, with its standard error where measured) in a
second panel. A Markdown table of the same numbers goes next to the figure (`--out` with `.md`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pretrained.files import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when loaded by file path
from sweep import find_run_dir  # noqa: E402


@dataclass(frozen=True)
class Point:
    """One setting's runs: the metric and the last probe's cosine of each."""

    value: str
    scores: list[float]
    cosines: list[float]
    cosine_ses: list[float]


def last_probe(run_dir: Path) -> tuple[float, float] | None:
    """(cos_mean, its standard error or NaN) at the run's last alignment probe, None without probes."""
    path = run_dir / "alignment_summary.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return float(rows[-1]["cos_mean"]), float(rows[-1].get("cos_mean_se") or "nan")


def run_dir_of(marker: Path) -> Path:
    """The run's directory beside its done.json (sweep.py's layout), wherever the sweep directory is now: the
    `run_dir` done.json records is the path the run had, which a moved or committed sweep no longer has."""
    try:
        return find_run_dir(marker.parent)
    except RuntimeError as err:
        raise ValueError(f"{marker}: {err}") from None


def collect(sweep: Path, key: str, metric: str) -> list[Point]:
    """The sweep's finished runs grouped by their value of `key`, in numeric order where the values are numbers."""
    groups: dict[str, list[dict]] = {}
    for marker in sorted((sweep / "runs").glob("*/seed*/done.json")):
        row = json.loads(marker.read_text())
        if key not in row:
            raise ValueError(f"{marker}: this run has no grid key {key!r} (its keys: {sorted(row)})")
        groups.setdefault(str(row[key]), []).append({**row, "run_dir": str(run_dir_of(marker))})
    if not groups:
        raise ValueError(f"no finished run (done.json) under {sweep}/runs/<point>/seed<S>/")
    points = []
    for value in sorted(groups, key=_order):
        rows = groups[value]
        missing = [r["run_dir"] for r in rows if metric not in r]
        if missing:
            raise ValueError(f"{metric!r} is not among the results of {missing[0]} (was the run tested?)")
        probes = [p for p in (last_probe(Path(r["run_dir"])) for r in rows) if p is not None]
        points.append(Point(value, [float(r[metric]) for r in rows], [c for c, _ in probes], [s for _, s in probes]))
    return points


def _order(value: str) -> tuple[int, float, str]:
    try:
        return 0, float(value), value
    except ValueError:
        return 1, 0.0, value


def _summary(values: list[float], digits: int) -> str:
    """Mean ± sample std over runs; a single run's value alone (its spread is unknown, not NaN)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(points: list[Point], key: str, metric: str) -> str:
    lines = [
        f"| {key} | runs | {metric} (mean ± std) | cosine at the last probe (mean ± std) | its standard error (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in points:
        cos = "–"
        if p.cosines:
            cos = _summary(p.cosines, 3)
            if len(p.cosines) != len(p.scores):
                cos += f" ({len(p.cosines)} of the runs)"
        ses = [s for s in p.cosine_ses if not math.isnan(s)]
        se = f"{statistics.fmean(ses):.3f}" if ses else "–"
        lines.append(f"| {p.value} | {len(p.scores)} | {_summary(p.scores, 4)} | {cos} | {se} |")
    return "\n".join(lines)


def draw(points: list[Point], key: str, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_cos = any(p.cosines for p in points)
    fig, axes = plt.subplots(1, 2 if with_cos else 1, figsize=(10 if with_cos else 5.5, 3.8), squeeze=False)
    numeric = all(_order(p.value)[0] == 0 for p in points)
    xs = [float(p.value) if numeric else i for i, p in enumerate(points)]
    panels = [(axes[0][0], [p.scores for p in points], metric)]
    if with_cos:
        panels.append((axes[0][1], [p.cosines for p in points], "task-gradient cosine, last probe"))
    for ax, values, label in panels:
        kept = [(x, v) for x, v in zip(xs, values) if v]
        means = [statistics.fmean(v) for _, v in kept]
        sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in kept]
        ax.errorbar([x for x, _ in kept], means, yerr=sds, marker="o", capsize=3)
        for x, v in kept:
            ax.scatter([x] * len(v), v, color="grey", s=10, zorder=3)
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(xs, [p.value for p in points])
        ax.set_xlabel(key.rsplit(".", 1)[-1])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} against {key} (mean ± std over runs; grey: each run)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a directory written by scripts/sweep.py")
    parser.add_argument("--key", required=True, help="the grid key on the x axis (its full dotted name)")
    parser.add_argument("--metric", default="test/avg/accuracy", help="a column of the sweep's results")
    parser.add_argument("--out", type=Path, required=True, help="the figure (.png); the table goes next to it (.md)")
    args = parser.parse_args(argv)
    try:
        points = collect(args.sweep, args.key, args.metric)
    except ValueError as err:
        parser.error(str(err))
    text = table(points, args.key, args.metric)
    print(text)
    draw(points, args.key, args.metric, args.out)
    atomic_write_text(args.out.with_suffix(".md"), text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
