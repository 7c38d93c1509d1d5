"""Reading runs: the directories that hold a run's logs, its scalars (TensorBoard events, else the callbacks'
CSVs) and what its saved config says (method, seed, tasks, backbone, task batches per step)."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paper_tables
import yaml

# The task name a datamodule takes when its config gives no `name` (datamodules/*.py); otherwise `language`.
DEFAULT_TASK_NAMES: dict[str, Any] = {
    "MLQATask": lambda a: a.get("language") and f"mlqa_{a['language']}",
    "XNLITask": lambda a: a.get("language") and f"xnli_{a['language']}",
    "GlueTask": lambda a: a.get("task"),
    "SquadTask": lambda a: "squad",
    "MNLITask": lambda a: "mnli",
}
CALLBACK_CSVS = ("mlm.csv", "drift.csv", "alignment.csv", "alignment_summary.csv", "efficiency.csv")
PROBE_CAPTION = (
    "MLM loss through a probe head fitted once on the frozen pretrained encoder (the backbone has no MLM head)"
)


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


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Directories holding event files or callback CSVs, under (or equal to) the given paths."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no such log directory: {p}")
        candidates = [p] if p.is_dir() else []
        candidates += [d for d in p.rglob("*") if d.is_dir()] if p.is_dir() else []
        for d in candidates:
            if any(d.glob("events.out.tfevents.*")) or any((d / n).is_file() for n in CALLBACK_CSVS):
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
    summary = {"cos_mean": "align/cos_mean", "mtl_loss": "tradeoff/mtl_loss", "cos_mean_se": "tradeoff/cos_mean_se"}
    efficiency = {k: f"efficiency/{k}" for k in ("wall_s", "inner_steps", "task_batches")}
    for tag, series in (_columns(run_dir / "alignment_summary.csv", summary)
                        | _columns(run_dir / "efficiency.csv", efficiency)).items():  # fmt: skip
        out.setdefault(tag, series)
    return out


def _columns(path: Path, tags: dict[str, str]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from a CSV's columns; NaN cells (a value not measured) are left out."""
    if not path.is_file():
        return {}
    rows = _rows(path)
    series = {tag: [(int(r["step"]), float(r[column])) for r in rows] for column, tag in tags.items()}
    return {tag: [(s, v) for s, v in values if not math.isnan(v)] for tag, values in series.items()}


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


def task_names(entries: Any) -> list[str]:
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
    run.seen, run.zero_shot = task_names(data.get("tasks")), task_names(data.get("zero_shot_tasks"))
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
