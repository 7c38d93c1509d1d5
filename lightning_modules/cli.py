"""The LightningCLI behind train.py: defaults, the forced checkpoint callback, compatibility checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from torch.optim import Optimizer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from datamodules.multitask import MultiTaskDataModule
from lightning_modules.multitask import MultiTaskModule


class MultiTaskCLI(LightningCLI):
    """`python train.py fit|validate|test --config ...`; see the README for the commands."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(MultiTaskModule, MultiTaskDataModule, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_optimizer_args((Optimizer,))  # as LightningCLI would, but so its default can be set
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.every_n_train_steps": 100,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-5}},
            }
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config["trainer"].get("logger") in (None, True):
            root = config["trainer"].get("default_root_dir") or "logs"
            config["trainer"]["logger"] = default_logger(config.get("config"), config.get("ckpt_path"), root)

    def after_instantiate_classes(self) -> None:
        # Fail on incompatible model/data/algorithm before any data is prepared or step is taken.
        self.model.model.check_tasks(self.datamodule.eval_task_names())
        self.datamodule.attach_schedule(self.model.algorithm.schedule())


def default_logger(config_paths: list[Any] | None, ckpt_path: str | None, root: str = "logs") -> Namespace:
    """TensorBoard under <root>/<experiment>/<config name>/version_N (root: trainer.default_root_dir, else
    ./logs); resuming from a checkpoint written in
    such a directory keeps logging into the same version instead of opening version_N+1."""
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
