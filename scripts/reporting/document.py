"""table.md: the runs grouped by the paper table they reproduce, each group's tables for its metrics, and per paper
table its published numbers and ours − paper."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence

import paper_tables

from reporting.names import display_names
from reporting.runs import Run
from reporting.tables import build_table, versus_table


def group_runs(runs: Sequence[Run], paper: str = "auto") -> list[tuple[paper_tables.PaperTable | None, list[Run]]]:
    """Runs per paper table: `auto` by their log path (runs of no table under None, last), `none`: all under None,
    a table key ("table4"): all under that table."""
    if paper == "none":
        return [(None, list(runs))]
    if paper != "auto":
        return [(paper_tables.get_table(paper), list(runs))]
    groups: dict[str | None, list[Run]] = defaultdict(list)
    for run in runs:
        table = paper_tables.detect_table(run.path, run.method)
        groups[table.key if table else None].append(run)
    ordered = sorted(groups, key=lambda k: (k is None, paper_tables.TABLES[k].number if k else 0))
    return [(paper_tables.TABLES[k] if k else None, groups[k]) for k in ordered]


def report_tables(runs: Sequence[Run], metric: str | None = None, split: str = "auto", select: str = "best",
                  scale: float | None = None, paper: str = "auto", versus: str | None = None) -> str:  # fmt: skip
    """table.md: our table(s), and per paper table its published numbers and ours − paper; with `versus`, each
    table's averages against that method (versus_table)."""
    sections = []
    for table, group in group_runs(runs, paper):
        metrics = metric.split(",") if metric else list(table.metrics if table else ["accuracy"])
        parts = [f"## Table {table.number}: {table.title}\n"] if table else []
        for m in metrics:
            try:
                text, summary = build_table(
                    group, m, split, select,
                    scale if scale is not None else (table.scale if table else None),
                    table.task_metrics() if table else None,
                    table.metrics[0] if table else None,
                )  # fmt: skip
            except ValueError as err:
                print(f"table{f' {table.number}' if table else ''}: {err}", file=sys.stderr)
                continue
            parts.append(text)
            if versus:
                parts.append(versus_table(summary, versus))
            if table and m in table.metrics:
                parts.append(paper_tables.comparison(table, m, summary, display_names(summary)))
        if parts and (not table or len(parts) > 1):
            sections.append("\n".join(parts))
    if not sections:
        raise ValueError("no table: no run has scores for the metric(s) asked for")
    return "\n".join(sections)
