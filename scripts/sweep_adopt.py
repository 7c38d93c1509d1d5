"""Adopts a finished run trained elsewhere as one point and seed of a sweep, so that a run is not trained twice
(e.g. the comparison's Sequential Reptile run is the default point of an α sweep), and refuses unless the run's
saved config is exactly the one the sweep would have run.

    python scripts/sweep_adopt.py RUN_DIR --config configs/offline/sequential_reptile.yaml \\
        --grid optimizer.init_args.lr=1e-4 --seed 1 --out sweeps/offline_alpha \\
        [-- the sweep's extra fit arguments, e.g. --trainer configs/offline/_trainer_tradeoff.yaml]

The arguments are the sweep's, with one value per grid key and one seed. The expected config is what
`train.py fit --print_config` gives for the fit command sweep.py would run (with the logger train.py adds); it is
compared with RUN_DIR/config.yaml key by key, the run's own root directory standing for the sweep's, and any
difference is refused, naming the key and both values. A run whose config monitors a ModelCheckpoint must have
been tested (test/... scalars in its event files), as the sweep would have done. The run directory is copied
without its checkpoints/ to DIR/runs/<point-id>/seed<S>/<experiment>/<method>/, and done.json records the
result row with `adopted_from` (the source). The sweep then skips this point and seed, and its figures read it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when loaded by file path
import sweep  # noqa: E402

from lightning_modules.lifecycle.run_dir import default_logger  # noqa: E402
from pretrained.files import atomic_write_text  # noqa: E402

ROOT = "<run root>"


def expected_config(run: sweep.Run) -> dict[str, Any]:
    """The config `train.py fit` saves for the sweep's run: --print_config, with the logger train.py adds."""
    printed = subprocess.run(
        [run.python, str(sweep.TRAIN), "fit", *run.fit_args, "--print_config"],
        check=True, cwd=run.cwd, env={**os.environ, **run.env}, capture_output=True, text=True,
    )  # fmt: skip
    config = yaml.safe_load(printed.stdout)
    if config["trainer"].get("logger") in (None, True):
        configs = [value for flag, value in zip(run.fit_args, run.fit_args[1:]) if flag == "--config"]
        logger = default_logger(configs, None, config["trainer"]["default_root_dir"])
        config["trainer"]["logger"] = logger.as_dict()
    return config


def normalized(value: Any, root: str) -> Any:
    """`value` with the run root directory, wherever it appears as a whole path or a path's start, replaced by a
    placeholder: the one thing an adopted run may differ in."""
    if isinstance(value, dict):
        return {k: normalized(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v, root) for v in value]
    if isinstance(value, str) and (value == root or value.startswith(root.rstrip("/") + "/")):
        return ROOT + value[len(root.rstrip("/")) :]
    return value


def differences(expected: Any, actual: Any, key: str = "") -> list[str]:
    """Every dotted key where `actual` differs from `expected`, with both values."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for k in dict.fromkeys([*expected, *actual]):
            sub = f"{key}.{k}" if key else str(k)
            if k not in actual:
                found.append(f"{sub}: missing from the run (expected {expected[k]!r})")
            elif k not in expected:
                found.append(f"{sub}: {actual[k]!r} in the run, not in the sweep's config")
            else:
                found += differences(expected[k], actual[k], sub)
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{key}[{i}]")]
    return [] if expected == actual else [f"{key}: {actual!r} in the run, {expected!r} in the sweep's config"]


def monitors_a_checkpoint(config: dict[str, Any]) -> bool:
    """Whether the config has a ModelCheckpoint with a monitor, after which sweep.py tests the best checkpoint."""
    callbacks = config.get("trainer", {}).get("callbacks") or []
    return any(
        str(c.get("class_path", "")).endswith("ModelCheckpoint") and (c.get("init_args") or {}).get("monitor")
        for c in callbacks
        if isinstance(c, dict)
    )


def adopt(run: sweep.Run, source: Path) -> dict[str, Any]:
    """Checks `source` against the sweep's run, copies it into the run's root and writes its done.json."""
    saved = source / "config.yaml"
    if not saved.is_file() or not source.name.startswith("version_"):
        raise ValueError(f"{source} is not a run directory (version_N with a config.yaml): give one")
    actual = yaml.safe_load(saved.read_text())
    expected = expected_config(run)
    found = differences(
        normalized(expected, expected["trainer"]["default_root_dir"]),
        normalized(actual, str(actual["trainer"].get("default_root_dir") or "")),
    )
    if found:
        listed = "\n  ".join(found)
        raise ValueError(f"{saved} is not the run the sweep would train for {run.label}:\n  {listed}")
    metrics = sweep.read_metrics(source)
    if monitors_a_checkpoint(actual) and not any(k.startswith("test/") for k in metrics):
        raise ValueError(
            f"{source} was not tested (no test/... scalars), as the sweep would have done: run "
            f"`python train.py test --config {saved} --ckpt_path best` first"
        )
    name = str(actual["trainer"]["logger"]["init_args"].get("name") or "")
    dest = Path(run.root) / name / source.name
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("checkpoints", ".run.lock"))
    row = {**run.grid, "seed": run.seed, "run_dir": str(dest), "adopted_from": str(source.resolve()), **metrics}
    atomic_write_text(Path(run.root) / "done.json", json.dumps(row, indent=1) + "\n")
    return row


DONE_ALREADY = "{root} is done already (done.json): nothing to adopt"


def adopt_into_new_root(run: sweep.Run, source: Path) -> None:
    """`adopt` into a root that does not exist yet; on any failure the root is removed again."""
    root = Path(run.root)
    if (root / "done.json").is_file():  # finished by a sweep after this was planned
        raise ValueError(DONE_ALREADY.format(root=root))
    if root.exists():
        raise ValueError(f"{root} holds an unfinished run of the sweep: rerun the sweep, or remove it")
    root.mkdir(parents=True)
    try:
        adopt(run, source)
    except BaseException:
        shutil.rmtree(root)  # nothing half-adopted is left for the sweep to trip over
        if not any(root.parent.iterdir()):
            root.parent.rmdir()
        raise


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv, extra = sweep.split_extra(argv)
    parser = sweep.sweep_parser(__doc__, "VALUE")
    parser.add_argument("run", type=Path, help="the finished run's directory (<experiment>/<method>/version_N)")
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    return argparse.Namespace(**vars(args), seeds=[args.seed], jobs=1, executor="local"), extra


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        runs, roots, skipped = sweep.plan(args, extra)
        if len(roots) != 1:
            raise ValueError(f"give one value per grid key: this names {len(roots)} points")
        if skipped:
            raise ValueError(DONE_ALREADY.format(root=roots[0]))
        with sweep.point_lock(Path(runs[0].root)):  # no sweep job starts this run while it is adopted
            adopt_into_new_root(runs[0], args.run.resolve())
    except (ValueError, sweep.PointBusy, subprocess.CalledProcessError) as error:
        stderr = getattr(error, "stderr", None)  # train.py's own message when --print_config failed
        print(f"sweep_adopt: {error}", *([stderr[-2000:]] if stderr else []), sep="\n", file=sys.stderr)
        return 2
    print(f"sweep_adopt: {args.run} is {runs[0].label} of {args.out}")
    print(f"sweep_adopt: results in {sweep.write_results(args.out.resolve())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
