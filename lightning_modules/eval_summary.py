"""The scores of `train.py validate|test` as one compact table: a row per task, a column per metric.

Lightning's own results table repeats every metric once per evaluation dataloader (one per language, so twelve
identical columns in four blocks for the offline default), because the module logs its per-task scores once, at
the end of the epoch. The CLI turns that table off (`--verbose true` brings it back) and prints this one instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def format_results(values: Mapping[str, float], split: str, seen: Sequence[str], zero_shot: Sequence[str]) -> str:
    """Rows: the training tasks, their average, the zero-shot tasks, theirs (a group without scores is left out);
    columns: the metrics in the order they were logged. `values` holds `<split>/<task>/<metric>` keys, the
    averages under the tasks `avg` and `zero_shot_avg` (as MultiTaskModule logs them)."""
    rows: list[tuple[str, str]] = []  # (label, task key)
    for tasks, average, label in (
        (seen, "avg", "average (trained on)"),
        (zero_shot, "zero_shot_avg", "average (zero-shot)"),
    ):
        present = [t for t in tasks if any(k.startswith(f"{split}/{t}/") for k in values)]
        rows += [(t, t) for t in present]
        if present:
            rows.append((label, average))
    metrics: list[str] = []
    for key in values:
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == split and parts[2] not in metrics:
            metrics.append(parts[2])
    if not rows or not metrics:
        return ""
    table = [[split, *metrics]]
    for label, task in rows:
        table.append([label, *(_cell(values.get(f"{split}/{task}/{m}")) for m in metrics)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in table]
    rule = "-" * len(lines[0])
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
