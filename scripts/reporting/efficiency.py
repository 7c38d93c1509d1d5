"""The numbers of the efficiency figure (paper Fig. 7c / 8a): per method, the validation score against the
cumulative inner (optimizer) steps, the cumulative task batches (the paper's gradient computations) and the
training wall clock (callbacks/efficiency.py). Pure functions of the runs; reporting/figures.py draws them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reporting.names import display_names, method_key
from reporting.runs import Run
from reporting.series import mean_std

PREFERRED_METRICS = ("accuracy", "f1", "exact_match", "macro_f1")


@dataclass
class EfficiencyCurve:
    """One method at each validation every one of its runs reached: x values and the score's mean and std over
    runs. `wall_s` (mean over runs) is None when a run did not log `efficiency/wall_s`."""

    label: str
    inner_steps: list[float]
    task_batches: list[float]
    wall_s: list[float] | None
    means: list[float]
    stds: list[float]


def score_tag(runs: Sequence[Run], metric: str | None) -> str | None:
    """`val/avg/<metric>`; without a metric the first of PREFERRED_METRICS that a run logged, else any."""
    logged = sorted({t for r in runs for t in r.scalars if t.startswith("val/avg/")})
    if metric:
        return f"val/avg/{metric}" if f"val/avg/{metric}" in logged else None
    preferred = [f"val/avg/{m}" for m in PREFERRED_METRICS if f"val/avg/{m}" in logged]
    return (preferred or [t for t in logged if not t.endswith("/loss")] or [None])[0]


def run_points(run: Run, tag: str) -> dict[int, tuple[float, float, float | None, float]]:
    """optimizer steps -> (inner steps, task batches, wall seconds or None, score) at each validation.

    Lightning logs a validation at one less than the optimizer steps it follows; the efficiency values are
    logged at the step count itself. A run without the Efficiency callback gets its counts from the step
    (task batches: steps x the MTL family's tasks per step) and no wall clock."""
    inner = dict(run.scalars.get("efficiency/inner_steps", []))
    batches = dict(run.scalars.get("efficiency/task_batches", []))
    wall = dict(run.scalars.get("efficiency/wall_s", []))
    points = {}
    for logged_at, score in run.scalars.get(tag, []):
        step = logged_at + 1
        points[step] = (
            inner.get(step, float(step)),
            batches.get(step, float(step * run.batches_per_step)),
            wall.get(step),
            score,
        )
    return points


def efficiency_curves(runs: Sequence[Run], tag: str) -> list[EfficiencyCurve]:
    """A curve per method with validation scores under `tag`, at the validations all its runs reached."""
    by_method: dict[str, list[dict[int, tuple[float, float, float | None, float]]]] = {}
    for run in runs:
        points = run_points(run, tag)
        if points:
            by_method.setdefault(run.method, []).append(points)
    methods = sorted(by_method, key=method_key)
    names = display_names(methods)
    curves = []
    for method in methods:
        per_run = by_method[method]
        steps = sorted(set.intersection(*(set(p) for p in per_run)))
        if not steps:
            continue
        n = len(per_run)
        walls = [[p[s][2] for p in per_run] for s in steps]
        measured = all(w is not None for ws in walls for w in ws)
        wall_s = [sum(ws) / n for ws in walls] if measured else None  # type: ignore[arg-type]
        stats = [mean_std([p[s][3] for p in per_run]) for s in steps]
        curves.append(
            EfficiencyCurve(
                label=f"{names[method]} (n={n})",
                inner_steps=[sum(p[s][0] for p in per_run) / n for s in steps],
                task_batches=[sum(p[s][1] for p in per_run) / n for s in steps],
                wall_s=wall_s,
                means=[m for m, _ in stats],
                stds=[sd for _, sd in stats],
            )
        )
    return curves
