"""The numbers of the analysis figures: per method, the curves over task batches (mean ± std over seeds) and the
values at the last point every run reached. Pure functions of the runs; reporting/figures.py draws them."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reporting.names import display_names, method_key
from reporting.runs import PROBE_CAPTION, Run

FIGURES = {
    "align/cos_mean": ("fig4_alignment.png", "Task-gradient cosine (mean over pairs)", "cosine"),
    "mlm/seen": ("fig5a_mlm_seen.png", "Masked-LM loss, seen languages", "MLM loss"),
    "mlm/unseen": ("fig5b_mlm_unseen.png", "Masked-LM loss, unseen languages", "MLM loss"),
    "drift/l2": ("fig5c_l2_drift.png", "l2 distance from the pretrained weights", "l2 distance"),
}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def aggregate(series: Iterable[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float]]:
    """Steps, means and stds over runs at every step some run measured."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for s in series:
        for step, value in s:
            by_step[step].append(value)
    steps = sorted(by_step)
    stats = [mean_std(by_step[s]) for s in steps]
    return steps, [m for m, _ in stats], [sd for _, sd in stats]


def series_by_method(runs: Sequence[Run], tag: str) -> dict[str, list[list[tuple[int, float]]]]:
    """method -> one series per run, x in task batches trained on (a step of m batches, the MTL family, counts m
    times), so that methods are compared at equal data."""
    by_method: dict[str, list[list[tuple[int, float]]]] = defaultdict(list)
    for run in runs:
        if run.scalars.get(tag):
            by_method[run.method].append(sorted((s * run.batches_per_step, v) for s, v in run.scalars[tag]))
    return dict(by_method)


@dataclass
class EndPoint:
    """Each method's values at the last point every run reached (its end, when all runs trained on as many
    batches), and the step-0 value (the pretrained model) averaged over runs."""

    batches: int
    same_end: bool  # every run was last measured at `batches`
    values: dict[str, list[float]]  # method -> one value per run
    start: float | None


def end_point(by_method: Mapping[str, list[list[tuple[int, float]]]]) -> EndPoint:
    ends = {series[-1][0] for runs_of in by_method.values() for series in runs_of}
    common = min(ends)
    values = {m: [[v for x, v in series if x <= common][-1] for series in runs_of] for m, runs_of in by_method.items()}
    starts = [s[0][1] for runs_of in by_method.values() for s in runs_of if s and s[0][0] == 0]
    return EndPoint(common, len(ends) == 1, values, sum(starts) / len(starts) if starts else None)


def where(end: EndPoint) -> str:
    return "at the last measurement" if end.same_end else f"at {end.batches} batches (the last point of every run)"


@dataclass
class Curve:
    """One method's curve: mean ± std over its runs at every measured point."""

    label: str  # its display name and number of runs
    steps: list[int]
    means: list[float]
    lower: list[float]
    upper: list[float]


@dataclass
class FigureData:
    """Everything an analysis figure shows, as numbers and text; reporting/figures.py only draws it."""

    curves: list[Curve]  # in the report's method order
    names: list[str]  # the bars' labels
    bars: list[tuple[float, float]]  # mean, std at the end point
    reference: float | None  # the pretrained model's value (step 0), a dashed line over the bars
    bottom: float | None  # the bars' axis bottom when it is not 0 (forgetting is the rise above the reference)
    bar_title: str
    title: str


def figure_data(runs: Sequence[Run], tag: str, title: str) -> FigureData | None:
    """Curves (mean ± std over seeds) and final-value bars per method for `tag`; None if no run logged it."""
    by_method = series_by_method(runs, tag)
    if not by_method:
        return None
    methods = sorted(by_method, key=method_key)
    names = display_names(methods)
    end = end_point(by_method)
    curves = []
    for method in methods:
        steps, means, stds = aggregate(by_method[method])
        curves.append(
            Curve(
                f"{names[method]} (n={len(by_method[method])})",
                steps,
                means,
                [m - s for m, s in zip(means, stds)],
                [m + s for m, s in zip(means, stds)],
            )
        )
    finals = [mean_std(end.values[m]) for m in methods]
    mlm = tag.startswith("mlm/")
    bottom = None
    if mlm and end.start is not None:
        low = min([end.start] + [m - s for m, s in finals])
        high = max([end.start] + [m + s for m, s in finals])
        bottom = low - 0.15 * (high - low or 1.0)
    if mlm and any(r.mlm_head.get("head") == "probe" for r in runs if r.method in by_method):
        title += "\n" + PROBE_CAPTION
    return FigureData(
        curves=curves,
        names=[names[m] for m in methods],
        bars=finals,
        reference=end.start if tag != "drift/l2" else None,
        bottom=bottom,
        bar_title=where(end) + ("\n(axis not from 0)" if mlm else ""),
        title=title,
    )
