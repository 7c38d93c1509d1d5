"""The paper-style results table and the forgetting analysis figures from the logs of several runs.

    python scripts/report.py logs/offline --out reports/offline
    python scripts/report.py logs/offline/mtl/version_0 logs/offline/mtl/version_1 ... --metric macro_f1
    python scripts/report.py logs/mlqa --out reports/mlqa        # + the paper's Tables 3 and 4, and ours − paper

Runs: every directory under the given paths that holds TensorBoard event files or the callbacks' CSVs. A run's
method is the name of its config (the parent of `version_N`: `logs/<experiment>/<method>/version_N`), its seed
the `seed_everything` of its `config.yaml`. Means and standard deviations (sample, n-1) are over the runs of a
method (seeds).

Writes into `--out`:
  table.md              a row per method, a column per language (training languages, then zero-shot ones),
                        then the average over all languages, over the seen and over the zero-shot ones; test
                        scores where every run has them (`train.py test`), else validation scores at each run's
                        best validation average (`--select last`: at its last validation); then the
                        analyses below as numbers (each method's bar, mean ± std over seeds, and the step-0 value),
                        taken at the end of training, not at the best-validation checkpoint.
  fig4_alignment.png    average pairwise cosine of task gradients (`align/cos_mean`), paper Fig. 4
  fig5a_mlm_seen.png    masked-LM loss on held-out text of seen languages (`mlm/seen`), Fig. 5a / 6a
  fig5b_mlm_unseen.png  ... of unseen languages (`mlm/unseen`), Fig. 5b / 6b
  fig5c_l2_drift.png    l2 distance from the pretrained weights (`drift/l2`), Fig. 5c / 6c
  fig7a_tradeoff.png    mean task-gradient cosine against the MTL loss on the same probe batches along training, a
                        line per method (mean over seeds), band ± the cosine's standard error over probe examples
                        where measured (GradientAlignment's `tradeoff/*`), Fig. 1 / 7a
  fig7c_efficiency.png  validation score (`val/avg/<first --metric>`) against cumulative inner steps, task batches
                        and training wall clock (the Efficiency callback's `efficiency/*`; without it the counts
                        come from the steps and there is no wall-clock panel), mean ± std over seeds, Fig. 7c / 8a
Each figure: the curve over training batches (optimizer steps × the MTL family's tasks per step, so that methods
are compared at equal data; mean over seeds, band ± 1 std) and a bar per method at the last measurement (the
finetuned model, as the paper's bars), or, where runs were measured to different points, at the last point every
run reached (named in the panel's title). Series come from the event files, else from the CSVs the
callbacks write (alignment.csv, mlm.csv, drift.csv). Runs whose masked-LM head was a probe head (backbone without
an MLM head, `mlm_head.json`) are marked so on the figures and in the table's notes.

`--metric accuracy,macro_f1` writes a table per metric; `--versus sequential_reptile` adds, under each table,
every method's difference to that method on the averages with Welch's t-test p-value over seeds.

The paper's numbers (`--paper`, default auto): runs of the paper's benchmarks, `logs/<experiment>/<method>/
version_N` with experiment tydiqa (Table 1), wikiann (2), mlqa with tydiqa_* configs (3) or squad_* configs (4),
xnli (5), glue (9), get one section per table in table.md: our table for each of the paper's metrics (F1 and EM
for QA; the model of each run picked by the validation average of the first, as its checkpoint), the paper's
table, and ours − paper per cell (scripts/paper_tables.py). `--paper table4` compares every run with one table;
`--paper none` switches it off.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when loaded by file path
import paper_tables  # noqa: E402
from reporting.document import group_runs, report_tables  # noqa: E402
from reporting.efficiency import efficiency_curves, score_tag  # noqa: E402
from reporting.figures import plot_efficiency, plot_figure, plot_tradeoff  # noqa: E402
from reporting.names import base_method, display_names, method_key, method_label  # noqa: E402
from reporting.runs import PROBE_CAPTION, Run, find_runs, load_run, read_scalars, task_name  # noqa: E402
from reporting.runs import task_names as _task_names  # noqa: E402
from reporting.series import FIGURES, aggregate, end_point, figure_data, mean_std, series_by_method  # noqa: E402
from reporting.tables import analysis_table, build_table, run_scores, summary_rows, versus_table  # noqa: E402
from reporting.tradeoff import tradeoff_curves  # noqa: E402

__all__ = [
    "FIGURES",
    "PROBE_CAPTION",
    "Run",
    "_task_names",
    "aggregate",
    "analysis_table",
    "base_method",
    "build_table",
    "display_names",
    "efficiency_curves",
    "end_point",
    "figure_data",
    "find_runs",
    "group_runs",
    "load_run",
    "main",
    "mean_std",
    "method_key",
    "method_label",
    "paper_tables",
    "plot_efficiency",
    "plot_figure",
    "plot_tradeoff",
    "read_scalars",
    "report_tables",
    "run_scores",
    "score_tag",
    "series_by_method",
    "summary_rows",
    "task_name",
    "tradeoff_curves",
    "versus_table",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", help="run directories or directories above them")
    parser.add_argument("--out", default="reports", help="output directory (table.md and the figures)")
    parser.add_argument("--metric", default=None, help="metrics of the table, comma-separated (val/<task>/<metric>); "
                        "default: the paper table's (QA: f1 and exact_match, NER: f1, XNLI/GLUE: accuracy), else "
                        "accuracy")  # fmt: skip
    parser.add_argument("--split", choices=["auto", "test", "val"], default="auto")
    parser.add_argument("--select", choices=["best", "last"], default="best", help="which validation (split val)")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply scores (default 100, 1 for loss and for QA, logged in percent)")  # fmt: skip
    parser.add_argument("--paper", default="auto", help="compare with the paper: auto (by log path), none, or one of "
                        + ", ".join(paper_tables.TABLES))  # fmt: skip
    parser.add_argument("--versus", default=None, metavar="METHOD",
                        help="add each method's difference to METHOD (config name, e.g. sequential_reptile) on the "
                        "averages, with Welch's t-test p over seeds")  # fmt: skip
    args = parser.parse_args(argv)

    if args.paper not in ("auto", "none"):
        try:
            paper_tables.get_table(args.paper)
        except ValueError as err:
            parser.error(str(err))
    runs = [load_run(d) for d in find_runs(args.logs)]
    if args.versus and args.versus not in {r.method for r in runs}:
        parser.error(
            f"--versus {args.versus}: no such method among the runs ({', '.join(sorted({r.method for r in runs}))})"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(runs)} runs: " + ", ".join(f"{m} ×{sum(r.method == m for r in runs)}"
                                           for m in sorted({r.method for r in runs}, key=method_key)))  # fmt: skip
    try:
        table = report_tables(runs, args.metric, args.split, args.select, args.scale, args.paper, args.versus)
    except ValueError as err:
        print(f"table: {err}", file=sys.stderr)
        table = ""
    analyses = analysis_table(runs, args.versus)
    if analyses:
        table = f"{table}\n{analyses}" if table else analyses
    if table:
        (out / "table.md").write_text(table)
        print(table)
    for tag, (filename, title, ylabel) in FIGURES.items():
        if plot_figure(runs, tag, out / filename, title, ylabel):
            print(f"wrote {out / filename}")
        else:
            print(f"no run logged {tag}: {filename} not written")
    if plot_tradeoff(runs, out / "fig7a_tradeoff.png"):
        print(f"wrote {out / 'fig7a_tradeoff.png'}")
    else:
        print("no run logged align/cos_mean and tradeoff/mtl_loss: fig7a_tradeoff.png not written")
    metric = args.metric.split(",")[0] if args.metric else None
    if plot_efficiency(runs, metric, out / "fig7c_efficiency.png"):
        print(f"wrote {out / 'fig7c_efficiency.png'}")
    else:
        print(f"no run logged val/avg/{metric or '<metric>'}: fig7c_efficiency.png not written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
