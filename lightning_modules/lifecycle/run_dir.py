"""Where a run lives: <root>/<experiment>/<config name>/version_N, and finding its files again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from lightning_modules.lifecycle.checkpoint_file import read_checkpoint


def run_dir_of(ckpt_path: str | None) -> Path | None:
    """The run directory of a checkpoint in <run>/checkpoints/, resolved (symlinks, relative paths)."""
    if ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        return Path(ckpt_path).resolve().parent.parent
    return None


def default_logger(config_paths: list[Any] | None, ckpt_path: str | None, root: str = "logs") -> Namespace:
    """TensorBoard under <root>/<experiment>/<config name>/version_N (root: trainer.default_root_dir, else
    ./logs); resuming from a checkpoint written in such a directory keeps logging into the same version
    instead of opening version_N+1."""
    run_dir = run_dir_of(ckpt_path)
    if run_dir is not None:
        init_args = {"save_dir": str(run_dir.parent), "name": "", "version": run_dir.name}
    else:
        name = "default"
        if config_paths:
            path = Path(str(config_paths[-1]))
            name = f"{path.parent.name}/{path.stem}"
        init_args = {"save_dir": str(root), "name": name}
    return Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger", init_args=Namespace(**init_args))


def is_run_logger(logger: Any, ckpt_path: str | None) -> bool:
    """Whether `logger` is a TensorBoard logger with no pinned version (as a run's saved config.yaml holds) and
    `ckpt_path` lies in a run's checkpoints/: `fit|validate|test --config <run>/config.yaml --ckpt_path
    <run>/checkpoints/x.ckpt` then logs into <run>, also after <run> was moved or copied (its config.yaml still
    names the old place), instead of opening a new version directory."""
    if run_dir_of(ckpt_path) is None or not hasattr(logger, "class_path"):
        return False
    args = logger.get("init_args") or {}
    return str(logger.class_path).endswith("TensorBoardLogger") and args.get("version") is None


def recorded_best(last: Path) -> dict[str, str]:
    """monitor -> the best checkpoint path ("" if none was saved yet) of every monitoring ModelCheckpoint whose
    record a run's last.ckpt holds."""
    states = read_checkpoint(last).get("callbacks", {})
    return {
        state["monitor"]: state.get("best_model_path") or ""
        for key, state in states.items()
        if "Checkpoint" in key and isinstance(state, dict) and state.get("monitor")
    }


def best_checkpoint(config_paths: list[Any] | None) -> str:
    """`validate|test --config <run>/config.yaml --ckpt_path best` in a new process: Lightning resolves "best"
    only right after `fit` in the same process, so read the best path that the run's monitoring ModelCheckpoint
    recorded in <run>/checkpoints/last.ckpt (looked up by name in <run>/checkpoints if the run moved)."""
    run_dir = Path(str(config_paths[-1])).parent if config_paths else None
    last = run_dir / "checkpoints" / "last.ckpt" if run_dir is not None else None
    if last is None or not last.is_file():
        raise ValueError(
            "--ckpt_path best needs --config <run>/config.yaml of a training run with <run>/checkpoints/last.ckpt"
            + (f"; {last} does not exist" if last is not None else "")
        )
    best = recorded_best(last)
    if len(best) != 1 or not next(iter(best.values())):
        found = ", ".join(best) or "none"
        raise ValueError(
            f"--ckpt_path best needs exactly one ModelCheckpoint with a monitor that saved a checkpoint in {run_dir} "
            f"(found: {found}); give the checkpoint file instead"
        )
    path = Path(next(iter(best.values())))
    if not path.is_file() and (run_dir / "checkpoints" / path.name).is_file():
        path = run_dir / "checkpoints" / path.name
    if not path.is_file():
        others = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
        raise FileNotFoundError(
            f"the best checkpoint that {last} records, {path.name}, is not in {run_dir / 'checkpoints'} (it holds "
            f"{', '.join(others) or 'no other checkpoint'}): the run stopped after a later validation replaced it "
            "and before last.ckpt was written again. Resume the run to finish it, or give one of those files as "
            "--ckpt_path"
        )
    return str(path)
