"""Runs `train.py fit` then `train.py test` for every point of a grid and every seed, through submitit.

    python scripts/sweep.py --config configs/synthetic/sequential_reptile.yaml \\
        --grid model.algorithm.init_args.inner_steps=10,50 --grid optimizer.init_args.lr=1e-4,3e-4 \\
        --seeds 0 1 2 --out sweeps/k_lr --jobs 2 [--executor local|slurm] [--slurm partition=gpu ...] \\
        [-- extra fit arguments, e.g. --trainer.max_steps 100]

Grid keys are train.py's dotted keys; values are split on commas. Each point and seed trains under
DIR/runs/<point-id>/seed<S> (the point-id names every grid key by its last dotted component and its value,
e.g. `inner_steps=10__lr=0.0001`), then tests the run's best checkpoint
(`--ckpt_path best`). A run with no monitoring ModelCheckpoint that saved a best checkpoint (the synthetic configs
have no validation) is not tested and its test columns stay empty.

A finished run leaves DIR/runs/<point-id>/seed<S>/done.json (its result row, written atomically); a rerun of the
same sweep skips those runs and starts any other one from scratch. While a job runs it holds an OS lock on its run
(DIR/.locks/<point-id>.seed<S>.lock), so a second sweep over the same DIR refuses that run rather than deleting it
under the first one. DIR/results.csv is rebuilt from every done.json
at the end of each invocation: the grid keys, seed, run_dir (and adopted_from where scripts/sweep_adopt.py brought
in a run trained elsewhere), then each `val/...` scalar at its last step and each
`test/...` scalar, read from the run's TensorBoard event files (else from Lightning's metrics.csv).

`--executor local` runs on this machine with submitit's LocalExecutor, which starts every job it is given at once,
so runs are submitted in waves of `--jobs`, each with OMP_NUM_THREADS = cores // jobs. `--executor slurm` submits
one job array with at most `--jobs` tasks running; `--slurm KEY=VALUE` sets submitit's `slurm_KEY` (e.g.
`partition=gpu`, `gpus_per_node=1`, `timeout_min=600`, `cpus_per_task=8`). Logs of the jobs are in DIR/submitit/.
The exit status is 1 if any run failed; the others still finish.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import submitit
from filelock import FileLock, Timeout

from lightning_modules.lifecycle.run_dir import recorded_best
from pretrained.files import atomic_write_text

TRAIN = Path(__file__).resolve().parents[1] / "train.py"
MANAGED = ("config", "seed_everything", "trainer.default_root_dir")
LOCAL_TIMEOUT_MIN = 60 * 24 * 30  # LocalExecutor kills a job after 2 minutes unless told otherwise
SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
SEEDS_NOTE = (
    "sweep: --seeds set seed_everything (initialisation, dropout, the probes' draws); the task order and each task's "
    "shuffling follow data.seed, the same in every seed unless the grid varies it (--grid data.seed=...)"
)


@dataclass(frozen=True)
class Run:
    """One point and seed: everything a job process needs, as plain values (it is pickled into the job)."""

    point_id: str
    grid: dict[str, str]
    seed: int
    root: str
    fit_args: list[str]
    python: str
    cwd: str
    env: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.point_id} seed {self.seed}"


# ------------------------------------------------------------------------------------------------ the grid
def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """`KEY=V1,V2` arguments -> {KEY: [V1, V2]}, in the order given."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"--grid {spec!r}: expected KEY=V1,V2,...")
        if key in MANAGED:
            raise ValueError(f"--grid {key}: the sweep sets {key} itself (a grid over configs needs one sweep each)")
        if key in grid:
            raise ValueError(f"--grid {key} given twice")
        items = values.split(",")
        if any(not v for v in items):
            raise ValueError(f"--grid {spec!r}: empty value")
        grid[key] = items
    return grid


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """The cartesian product, the first key varying slowest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key's last component, or as many last components as it takes to tell the keys apart."""
    names: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if not any(other != key and other.split(".")[-n:] == parts[-n:] for other in keys):
                break
        names[key] = name
    return names


def canonical_value(value: str) -> str:
    """Numbers in one spelling (1e-4 and 0.0001 are the same point), anything else as given."""
    for kind in (int, float):
        try:
            return repr(kind(value))
        except ValueError:
            pass
    return value


def safe(text: str) -> str:
    """A filesystem-safe spelling; a hash of the original is added when characters had to be replaced, so that
    different values stay different."""
    cleaned = SAFE.sub("_", text)
    return cleaned if cleaned == text else f"{cleaned}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def point_id(point: dict[str, str], names: dict[str, str]) -> str:
    """`inner_steps=10__lr=0.0001`: readable, deterministic, one directory name."""
    if not point:
        return "default"
    text = "__".join(f"{safe(names[k])}={safe(canonical_value(v))}" for k, v in point.items())
    return text if len(text) <= 200 else f"{text[:180]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def parse_options(specs: Sequence[str]) -> dict[str, Any]:
    """`--slurm KEY=VALUE` arguments; values are read as JSON when they are (600, true, {"a": 1}), else strings."""
    options: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm {spec!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


# ------------------------------------------------------------------------------------------------ one job
class PointBusy(RuntimeError):
    """Another live process is running this point and seed."""


@contextmanager
def point_lock(root: Path) -> Iterator[None]:
    """Holds the lock of `root` (DIR/runs/<point-id>/seed<S>), the file DIR/.locks/<point-id>.seed<S>.lock, for
    the whole job, so that a second sweep over the same DIR (started twice, or a requeued SLURM task) refuses the
    run instead of deleting it under the first one. An OS file lock: the kernel releases it when the holder dies,
    kill -9 included; the file stays (deleting it would let two processes hold locks on two files)."""
    path = root.parents[2] / ".locks" / f"{root.parent.name}.{root.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise PointBusy(
            f"{root} is being run by another process, which holds {path}: nothing was deleted. Wait for that "
            "sweep to finish (or stop it), then rerun this one: it skips what finished"
        ) from None
    try:
        yield
    finally:
        lock.release()


def run_point(run: Run) -> dict[str, Any]:
    """The job: fit, test the best checkpoint if there is one, write done.json and return the result row."""
    root = Path(run.root)
    with point_lock(root):
        return fit_and_test(run, root)


def fit_and_test(run: Run, root: Path) -> dict[str, Any]:
    """`run_point`'s work, done while it holds the run's lock."""
    if (root / "done.json").is_file():  # another sweep finished it after this one was planned
        return json.loads((root / "done.json").read_text())
    if root.exists():
        shutil.rmtree(root)  # an unfinished earlier attempt
    root.mkdir(parents=True)
    train(run, ["fit", *run.fit_args])
    run_dir = find_run_dir(root)
    if has_best_checkpoint(run_dir):
        test = ["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "best"]
        train(run, [*test, "--trainer.enable_progress_bar", "false"])
    row = {**run.grid, "seed": run.seed, "run_dir": str(run_dir), **read_metrics(run_dir)}
    atomic_write_text(root / "done.json", json.dumps(row, indent=1) + "\n")
    return row


def train(run: Run, args: list[str]) -> None:
    """`train.py ARGS` in the run's environment; its output goes to the job's log."""
    code = subprocess.run([run.python, str(TRAIN), *args], cwd=run.cwd, env={**os.environ, **run.env}).returncode
    if code != 0:
        raise RuntimeError(f"train.py {args[0]} exited with status {code} (its error is in the log)")


def find_run_dir(root: Path) -> Path:
    """The `version_*` directory the fit created under `root` (`<experiment>/<method>/version_0`)."""
    found = sorted(p.parent for p in root.rglob("config.yaml") if p.parent.name.startswith("version_"))
    if len(found) != 1:
        raise RuntimeError(f"expected exactly one run (version_*/config.yaml) under {root}, found {found}")
    return found[0]


def has_best_checkpoint(run_dir: Path) -> bool:
    """Whether a ModelCheckpoint with a monitor saved a best checkpoint, as `test --ckpt_path best` needs."""
    last = run_dir / "checkpoints" / "last.ckpt"
    return last.is_file() and any(recorded_best(last).values())


def read_metrics(run_dir: Path) -> dict[str, float]:
    """Every `val/...` scalar at its last step and every `test/...` scalar of a run."""
    series: dict[str, list[tuple[int, float]]] = {}
    if any(run_dir.glob("events.out.tfevents.*")):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series[tag] = [(int(e.step), float(e.value)) for e in acc.Scalars(tag)]
    elif (run_dir / "metrics.csv").is_file():
        with open(run_dir / "metrics.csv", newline="") as f:
            for record in csv.DictReader(f):
                for tag, value in record.items():
                    if value not in (None, ""):
                        series.setdefault(tag, []).append((int(float(record.get("step") or 0)), float(value)))
    # sorted() is stable: of several values at the last step, the last one logged
    return {
        tag: sorted(points, key=lambda p: p[0])[-1][1]
        for tag, points in series.items()
        if tag.startswith(("val/", "test/")) and points
    }


# ------------------------------------------------------------------------------------------------ results
def write_results(out: Path, roots: Sequence[Path] = ()) -> Path:
    """DIR/results.csv from every done.json under DIR/runs: the runs of `roots` in that order, then any others."""
    rank = {Path(root) / "done.json": i for i, root in enumerate(roots)}
    markers = sorted((out / "runs").glob("*/seed*/done.json"), key=lambda m: (rank.get(m, len(rank)), str(m)))
    rows = [json.loads(m.read_text()) for m in markers]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    metrics = [k for k in keys if k.startswith(("val/", "test/"))]
    record = ["seed", "run_dir"] + (["adopted_from"] if "adopted_from" in keys else [])
    grid = [k for k in keys if k not in record and k not in metrics]
    columns = grid + record + sorted(k for k in metrics if k.startswith("val/"))
    columns += sorted(k for k in metrics if k.startswith("test/"))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.csv", text.getvalue())
    return out / "results.csv"


# ------------------------------------------------------------------------------------------------ submitit
def make_executor(
    kind: str, folder: Path, jobs: int, slurm: dict[str, Any], cluster: str | None = None
) -> submitit.AutoExecutor:
    """submitit's executor for `kind` ("local" or "slurm"); `cluster` overrides where it runs (tests run the
    slurm parameters through the local cluster, which checks their names and ignores them)."""
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster or kind)
    executor.update_parameters(name="sweep", stderr_to_stdout=True, local_timeout_min=LOCAL_TIMEOUT_MIN)
    if kind == "slurm":
        if "timeout_min" not in slurm:
            print("sweep: no --slurm timeout_min=MINUTES: submitit asks SLURM for 5 minutes", file=sys.stderr)
        executor.update_parameters(slurm_array_parallelism=jobs, **{f"slurm_{k}": v for k, v in slurm.items()})
    return executor


def submit(executor: submitit.AutoExecutor, runs: Sequence[Run], wave: int) -> list[tuple[Run, str | None]]:
    """Runs `runs` through submitit, `wave` at a time, and returns each run with its failure's log (None: ok)."""
    if __name__ != "__main__":  # imported (tests): job processes cannot import this script by name
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    outcomes: list[tuple[Run, str | None]] = []
    for start in range(0, len(runs), wave):
        batch = list(runs[start : start + wave])
        for run, job in zip(batch, executor.map_array(run_point, batch)):
            try:
                job.result()
                outcomes.append((run, None))
                print(f"sweep: finished {run.label}", flush=True)
            except Exception as error:  # one failed run must not stop the others; the log has the traceback
                log = str(job.paths.stdout)
                outcomes.append((run, log))
                print(f"sweep: FAILED {run.label}: {failure_reason(error)}; log: {log}", flush=True)
    return outcomes


def failure_reason(error: BaseException) -> str:
    """The last line of the job's traceback, which submitit's error carries between two dashed lines."""
    parts = str(error).split("-" * 22 + "\n")
    lines = [line.strip() for line in (parts[1] if len(parts) > 2 else str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


# ------------------------------------------------------------------------------------------------ main
def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The script's own arguments, and those after `--`, which go to every `train.py fit`."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    return argv[: argv.index("--")], argv[argv.index("--") + 1 :]


def sweep_parser(description: str | None, values: str) -> argparse.ArgumentParser:
    """The arguments that define a sweep's runs: --config, --grid KEY=<values>, --out."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--grid", action="append", default=[], metavar=f"KEY={values}")
    parser.add_argument("--out", type=Path, required=True)
    return parser


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv, extra = split_extra(argv)
    parser = sweep_parser(__doc__, "V1,V2")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    return args, extra


def plan(args: argparse.Namespace, extra: Sequence[str]) -> tuple[list[Run], list[Path], int]:
    """Every run of the sweep in order, with its root, and how many were already done (skipped)."""
    grid = parse_grid(args.grid)
    names = short_names(list(grid))
    points = grid_points(grid)
    ids = [point_id(p, names) for p in points]
    if len(set(ids)) != len(ids):
        raise ValueError(f"grid points with the same id (duplicate values?): {sorted(ids)}")
    out, config = args.out.resolve(), args.config.resolve()
    if not config.is_file():
        raise ValueError(f"no such config: {args.config}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env = {"OMP_NUM_THREADS": str(max(1, cores // args.jobs))} if args.executor == "local" else {}
    runs, roots, skipped = [], [], 0
    for point, pid in zip(points, ids):
        for seed in dict.fromkeys(args.seeds):
            root = out / "runs" / pid / f"seed{seed}"
            roots.append(root)
            if (root / "done.json").is_file():
                skipped += 1
                continue
            fit_args = ["--config", str(config), *(f"--{k}={v}" for k, v in point.items())]
            fit_args += ["--seed_everything", str(seed), "--trainer.default_root_dir", str(root)]
            fit_args += ["--trainer.enable_progress_bar", "false", *extra]
            runs.append(Run(pid, point, seed, str(root), fit_args, sys.executable, os.getcwd(), env))
    return runs, roots, skipped


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        runs, roots, skipped = plan(args, extra)
        slurm = parse_options(args.slurm)
    except ValueError as error:
        print(f"sweep: {error}", file=sys.stderr)
        return 2
    if len(args.seeds) > 1 and not any(g.partition("=")[0].strip().lstrip("-") == "data.seed" for g in args.grid):
        print(SEEDS_NOTE)
    out = args.out.resolve()
    outcomes: list[tuple[Run, str | None]] = []
    try:
        if runs:
            executor = make_executor(args.executor, out / "submitit", args.jobs, slurm)
            outcomes = submit(executor, runs, args.jobs if args.executor == "local" else len(runs))
    finally:
        results = write_results(out, roots)
    failed = [(run, log) for run, log in outcomes if log is not None]
    print(f"sweep: {len(outcomes) - len(failed)} ran, {skipped} skipped (done before), {len(failed)} failed")
    for run, log in failed:
        print(f"  failed: {run.label}: log {log}")
    print(f"sweep: results in {results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
