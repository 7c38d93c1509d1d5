"""How the gradient-alignment probe's size sets the noise of `align/cos_mean`: the cosine and its standard error
(delta method, `callbacks/alignment_stats.py`) at several probe sizes, and, as a check of that standard error,
the spread of the cosine over independently drawn probes of one size.

    python benchmarks/probe_size.py [--config configs/offline/sequential_reptile.yaml] [--sizes 8 16 32 64 128]
        [--draws 5] [--draw-sizes 8 32] [--out docs/offline/probe_size.md]

One fit, stopped before its first training step, with only GradientAlignment callbacks, which all measure at step 0
(the pretrained encoder and the seeded heads): one per size with `standard_error: true` (probe seed 0), and `--draws`
probes with seeds 0, 1, ... per size of `--draw-sizes` (without the standard error). The standard deviation of
those draws' cosines should be close to the standard error, which scales as 1/sqrt(size).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightning_modules.cli import MultiTaskCLI  # noqa: E402


class StopAfterStart(Callback):
    """Ends the fit after the callbacks' step-0 measurements: the first step would be the run's last, measured
    again."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        trainer.should_stop = True


def callbacks(sizes: list[int], draw_sizes: list[int], draws: int) -> list[dict]:
    """GradientAlignment callbacks, each writing its own summary CSV (probe_<size>_<seed>[_se].csv)."""
    specs = [(n, 0, True) for n in sizes] + [(n, s, False) for n in draw_sizes for s in range(draws)]
    return [
        {
            "class_path": "callbacks.alignment.GradientAlignment",
            "init_args": {
                "every_n_steps": 1000,
                "probe_batch_size": n,
                "seed": seed,
                "heatmap": False,
                "standard_error": se,
                "filename": f"pairs_{n}_{seed}{'_se' if se else ''}.csv",
                "summary_filename": f"probe_{n}_{seed}{'_se' if se else ''}.csv",
            },
        }
        for n, seed, se in specs
    ]


def first_row(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        return next(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/offline/sequential_reptile.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--draw-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--out", type=Path, default=None, help="also write the tables (Markdown) here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Path(tmp) / "trainer.yaml"
        trainer.write_text(yaml.safe_dump({"callbacks": callbacks(args.sizes, args.draw_sizes, args.draws)}))
        command = [
            "--config", str(args.config), "--trainer", str(trainer), "--trainer.max_steps", "1",
            "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", tmp,
        ]  # fmt: skip
        with mock.patch.object(sys, "argv", sys.argv[:1]):
            cli = MultiTaskCLI(args=command, run=False)
        cli.trainer.callbacks.append(StopAfterStart())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        if cli.trainer.global_step != 0:
            raise RuntimeError(f"the fit took {cli.trainer.global_step} steps; the probes are those of step 0 only")
        (run,) = {p.parent for p in Path(tmp).rglob("probe_*.csv")}
        lines = [
            f"Probe size and the noise of align/cos_mean at step 0 ({args.config.relative_to(REPO)}):",
            "",
            "| probe examples per task | cos_mean | standard error |",
            "|---:|---:|---:|",
        ]
        for n in args.sizes:
            row = first_row(run / f"probe_{n}_0_se.csv")
            lines.append(f"| {n} | {float(row['cos_mean']):.3f} | {float(row['cos_mean_se']):.3f} |")
        lines += ["", f"The spread over {args.draws} probes drawn with seeds 0-{args.draws - 1}:", ""]
        lines += ["| probe examples per task | mean cos_mean | std over draws | standard error (seed 0) |"]
        lines += ["|---:|---:|---:|---:|"]
        for n in args.draw_sizes:
            values = [float(first_row(run / f"probe_{n}_{s}.csv")["cos_mean"]) for s in range(args.draws)]
            se = float(first_row(run / f"probe_{n}_0_se.csv")["cos_mean_se"]) if n in args.sizes else float("nan")
            lines.append(f"| {n} | {statistics.mean(values):.3f} | {statistics.stdev(values):.3f} | {se:.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
