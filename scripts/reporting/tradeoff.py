"""The numbers of the trade-off figure (paper Fig. 1 / 7a): per method, the mean task-gradient cosine against the
MTL loss on the same probe batches at the same weights, along training. Pure functions of the runs;
reporting/figures.py draws them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reporting.names import display_names, method_key
from reporting.runs import Run

COS, LOSS, SE = "align/cos_mean", "tradeoff/mtl_loss", "tradeoff/cos_mean_se"


@dataclass
class TradeoffCurve:
    """One method: at each measured step (in order), the MTL loss and the cosine, each a mean over the method's
    runs, and the cosine's standard error over probe examples (None where a run did not measure it)."""

    label: str
    steps: list[int]
    losses: list[float]
    cosines: list[float]
    se: list[float] | None


def tradeoff_curves(runs: Sequence[Run]) -> list[TradeoffCurve]:
    """A curve per method whose runs logged both the cosine and the MTL loss, at the steps every such run of the
    method measured both. The band is the mean of the runs' standard errors, not that divided by √runs: the probe
    examples are drawn by the callback's own seed, the same in every run, so their error does not average out
    over training seeds."""
    by_method: dict[str, list[Run]] = {}
    for run in runs:
        if run.scalars.get(COS) and run.scalars.get(LOSS):
            by_method.setdefault(run.method, []).append(run)
    methods = sorted(by_method, key=method_key)
    names = display_names(methods)
    curves = []
    for method in methods:
        series = [(dict(r.scalars[COS]), dict(r.scalars[LOSS]), dict(r.scalars.get(SE, []))) for r in by_method[method]]
        steps = sorted(set.intersection(*(set(cos) & set(loss) for cos, loss, _ in series)))
        if not steps:
            continue
        n = len(series)
        with_se = all(step in se for _, _, se in series for step in steps)
        curves.append(
            TradeoffCurve(
                label=f"{names[method]} (n={n})",
                steps=steps,
                losses=[sum(loss[s] for _, loss, _ in series) / n for s in steps],
                cosines=[sum(cos[s] for cos, _, _ in series) / n for s in steps],
                se=[sum(se[s] for _, _, se in series) / n for s in steps] if with_se else None,
            )
        )
    return curves
