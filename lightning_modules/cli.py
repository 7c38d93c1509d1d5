"""The LightningCLI behind train.py: defaults, the forced checkpoint callback, compatibility checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from torch.optim import Optimizer

from datamodules.multitask import MultiTaskDataModule
from lightning_modules.multitask import MultiTaskModule, check_checkpoint_compatible


class FinalStepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose last.ckpt holds the final step. Lightning 2.6 writes last.ckpt at the end of
    training only if nothing was saved during the run, so a run stopped by max_steps between two
    every_n_train_steps saves would otherwise resume from the earlier save and redo those steps."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        else:
            super().on_train_end(trainer, pl_module)


class MultiTaskCLI(LightningCLI):
    """`python train.py fit|validate|test --config ...`; see the README for the commands."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(MultiTaskModule, MultiTaskDataModule, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(FinalStepCheckpoint, "checkpoint")
        parser.add_optimizer_args((Optimizer,))  # as LightningCLI would, but so its default can be set
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.every_n_train_steps": 100,
                # DESIGN fact 6: the data module shards each task by rank itself (same task on every rank).
                "trainer.use_distributed_sampler": False,
                # jsonargparse carries a default's init args over to any optimizer class a config names later
                # (SGD would get AdamW's weight_decay=0.01), so the default holds only values that are harmless
                # to carry: the paper's lr 3e-5 and no weight decay (the paper gives none; HF's default is 0).
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-5, "weight_decay": 0.0}},
            }
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        # validate/test print MultiTaskModule's compact table (lightning_modules/eval_summary.py) instead of
        # Lightning's, which repeats every score once per evaluation dataloader; `--verbose true` brings it back.
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in ("validate", "test"):
            parser.set_defaults(verbose=False)
        return parser

    def before_instantiate_classes(self) -> None:
        if self.subcommand not in (None, "fit"):
            self.save_config_callback = None  # validate/test must not overwrite the training run's config.yaml
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand in ("validate", "test") and config.get("ckpt_path") == "best":
            config["ckpt_path"] = best_checkpoint(config.get("config"))
        logger, ckpt_path = config["trainer"].get("logger"), config.get("ckpt_path")
        if logger in (None, True) or is_run_logger(logger, ckpt_path):
            root = config["trainer"].get("default_root_dir") or "logs"
            config["trainer"]["logger"] = default_logger(config.get("config"), ckpt_path, root)

    def after_instantiate_classes(self) -> None:
        # Fail on incompatible checkpoint/model/data/algorithm before any data is prepared, any file is
        # written into the log directory (config.yaml) or any step is taken.
        config = self.config[self.subcommand] if self.subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
            check_checkpoint_compatible(checkpoint, self.datamodule.task_names, self.model.algorithm, ckpt_path)
        self.model.model.check_tasks(self.datamodule.eval_task_names())
        self.datamodule.attach_schedule(self.model.algorithm.schedule())


def default_logger(config_paths: list[Any] | None, ckpt_path: str | None, root: str = "logs") -> Namespace:
    """TensorBoard under <root>/<experiment>/<config name>/version_N (root: trainer.default_root_dir, else
    ./logs); resuming from a checkpoint written in such a directory keeps logging into the same version
    instead of opening version_N+1 (DESIGN fact 8)."""
    if ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        version_dir = Path(ckpt_path).resolve().parent.parent
        init_args = {"save_dir": str(version_dir.parent), "name": "", "version": version_dir.name}
    else:
        name = "default"
        if config_paths:
            path = Path(str(config_paths[-1]))
            name = f"{path.parent.name}/{path.stem}"
        init_args = {"save_dir": str(root), "name": name}
    return Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger", init_args=Namespace(**init_args))


def is_run_logger(logger: Any, ckpt_path: str | None) -> bool:
    """Whether `logger` is the default TensorBoard logger that a run's saved config.yaml holds (no version) and
    `ckpt_path` lies in that run's checkpoints/: `fit|validate|test --config <run>/config.yaml --ckpt_path
    <run>/checkpoints/x.ckpt` then logs into <run> instead of opening version_N+1."""
    if not ckpt_path or Path(ckpt_path).parent.name != "checkpoints" or not hasattr(logger, "class_path"):
        return False
    args = logger.get("init_args") or {}
    if not str(logger.class_path).endswith("TensorBoardLogger") or args.get("version") is not None:
        return False
    run_parent = Path(ckpt_path).resolve().parent.parent.parent
    return (Path(str(args.get("save_dir", ""))) / str(args.get("name") or "")).resolve() == run_parent


def best_checkpoint(config_paths: list[Any] | None) -> str:
    """`validate|test --config <run>/config.yaml --ckpt_path best` in a new process: Lightning resolves "best"
    only right after `fit` in the same process, so read the best path that the run's monitoring ModelCheckpoint
    recorded in <run>/checkpoints/last.ckpt (same file name looked up in <run>/checkpoints if the run moved)."""
    run_dir = Path(str(config_paths[-1])).parent if config_paths else None
    last = run_dir / "checkpoints" / "last.ckpt" if run_dir is not None else None
    if last is None or not last.is_file():
        raise ValueError(
            "--ckpt_path best needs --config <run>/config.yaml of a training run with <run>/checkpoints/last.ckpt"
            + (f"; {last} does not exist" if last is not None else "")
        )
    states = torch.load(last, map_location="cpu", weights_only=False, mmap=True).get("callbacks", {})
    best = {
        state["monitor"]: state.get("best_model_path") or ""
        for key, state in states.items()
        if "Checkpoint" in key and isinstance(state, dict) and state.get("monitor")
    }
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
        raise FileNotFoundError(f"the best checkpoint recorded by the run, {path}, does not exist")
    return str(path)
