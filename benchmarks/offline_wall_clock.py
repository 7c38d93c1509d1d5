"""Training seconds per task batch of each method on the offline default (the x axis of the paper's Fig. 8a),
one method at a time: run it on quiet cores, since two runs sharing cores measure each other.

    python benchmarks/offline_wall_clock.py [--steps 40] [--warmup 5] [--threads 2] [--methods mtl sequential_reptile]

Each method runs `train.py fit --config configs/offline/<method>.yaml` with the trainer file
`configs/offline/_trainer_efficiency.yaml` in a subprocess for `--steps` optimizer steps with validation off.
callbacks.Efficiency's `wall_s` counts only training-step seconds (forward, backward, optimizer step, the Reptile
family's outer update; no validation, probes or batch fetching), and `task_batches` the task batches forward and
backward (an MTL step over m tasks counts m). Printed: seconds per task batch after the first `--warmup` steps,
and the ratio to the first method.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def seconds_per_task_batch(efficiency_csv: Path, warmup: int) -> tuple[float, int]:
    """(training seconds per task batch after the first `warmup` steps, task batches timed)."""
    with open(efficiency_csv, newline="") as f:
        rows = [(int(r["step"]), float(r["wall_s"]), int(r["task_batches"])) for r in csv.DictReader(f)]
    start = next(r for r in rows if r[0] == warmup)
    end = rows[-1]
    if end[2] <= start[2]:
        raise ValueError(f"{efficiency_csv}: no task batch after the {warmup} warm-up steps")
    return (end[1] - start[1]) / (end[2] - start[2]), end[2] - start[2]


def run(method: str, steps: int, threads: int, root: Path) -> Path:
    """Trains `method` for `steps` optimizer steps under `root`; the run's efficiency.csv."""
    command = [sys.executable, str(REPO / "train.py"), "fit", "--config", f"configs/offline/{method}.yaml"]
    command += ["--trainer", "configs/offline/_trainer_efficiency.yaml", "--trainer.max_steps", str(steps)]
    command += ["--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false", "--seed_everything", "0"]
    command += ["--trainer.default_root_dir", str(root / method)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    (found,) = (root / method).rglob("efficiency.csv")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per method, warm-up included")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each run")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--methods", nargs="+", default=["mtl", "sequential_reptile"])
    args = parser.parse_args()
    if not 1 <= args.warmup < args.steps:
        parser.error("need 1 <= --warmup < --steps")
    print(f"{args.steps} steps per method ({args.warmup} untimed), {args.threads} thread(s), one method at a time")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            results[method] = seconds_per_task_batch(run(method, args.steps, args.threads, Path(tmp)), args.warmup)
            seconds, batches = results[method]
            print(f"{method:>20}: {seconds:.3f} s per task batch ({batches} task batches timed)", flush=True)
    first = args.methods[0]
    for method in args.methods[1:]:
        print(f"{method} / {first}: {results[method][0] / results[first][0]:.3f} per task batch")


if __name__ == "__main__":
    main()
