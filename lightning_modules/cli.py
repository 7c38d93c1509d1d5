"""The LightningCLI behind train.py: defaults, the forced checkpoint callback and the run lifecycle checks.

Before anything is instantiated or written, a command is checked against the run it continues: the checkpoint
file is verified, its recorded settings are compared with the command's, and an untrained evaluation needs to
be asked for. The run directory is then locked for the command's duration."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.optim import Optimizer

from datamodules.multitask import MultiTaskDataModule
from lightning_modules.lifecycle import (
    AtomicCheckpointIO,
    FinalStepCheckpoint,
    PreemptionCheckpoint,
    RunLock,
    StoppedBySignal,
    read_checkpoint,
)
from lightning_modules.lifecycle.config_files import check_config_files
from lightning_modules.lifecycle.run_config import (
    DEFINING_KEYS,
    EVALUATION_KEYS,
    defining_config,
    differences,
    format_differences,
    is_fixed,
)
from lightning_modules.lifecycle.run_dir import best_checkpoint, default_logger, is_run_logger
from lightning_modules.multitask import MultiTaskModule, check_checkpoint_compatible
from lightning_modules.performance import Performance, from_config
from lightning_modules.strategies import check_strategy
from pretrained.files import atomic_write_text

__all__ = ["FinalStepCheckpoint", "MultiTaskCLI"]

CHANGES_FILE = "config_changes.yaml"
LIGHTNING_CKPT_KEYWORDS = ("last", "hpc", "registry")


class AtomicSaveConfigCallback(SaveConfigCallback):
    """Writes the run's config.yaml through a temporary file, so a kill never leaves it half-written."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = trainer.log_dir  # a collective under DDP: every rank calls it
        if trainer.is_global_zero and log_dir is not None:
            text = self.parser.dump(self.config, skip_none=False, format="yaml")
            atomic_write_text(Path(log_dir) / self.config_filename, text)
        self.already_saved = trainer.strategy.broadcast(True)


class MultiTaskCLI(LightningCLI):
    """`python train.py fit|validate|test --config ...`; see the README for the commands."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_callback", AtomicSaveConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self.preemption: PreemptionCheckpoint | None = None
        self._checkpoint: dict[str, Any] | None = None
        self._changes: list[tuple[str, Any, Any]] = []
        self._run_config: dict[str, Any] = {}  # the command's settings that define a run (DEFINING_KEYS)
        super().__init__(MultiTaskModule, MultiTaskDataModule, **kwargs)

    # ------------------------------------------------------------------ parsing
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(FinalStepCheckpoint, "checkpoint")
        parser.add_class_arguments(Performance, "performance", instantiate=False)
        parser.link_arguments("data", "model.data", compute_fn=MultiTaskDataModule.facts, apply_on="instantiate")
        parser.add_optimizer_args((Optimizer,))  # as LightningCLI would, but so its default can be set
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.every_n_train_steps": 100,
                "checkpoint.enable_version_counter": False,  # one last.ckpt per run, replaced atomically
                "checkpoint.save_top_k": 0,  # not also an epoch=..-step=...ckpt copy of every save
                # The data module shards each task by rank itself (the same task on every rank).
                "trainer.use_distributed_sampler": False,
                # jsonargparse carries a default's init args over to any optimizer class a config names later
                # (SGD would get AdamW's weight_decay=0.01), so the default holds only values that are harmless
                # to carry: the paper's lr 3e-5 and no weight decay (the paper gives none; HF's default is 0).
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 3e-5, "weight_decay": 0.0}},
            }
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        parser.add_argument(
            "--allow_changed_config",
            type=bool,
            default=False,
            help="With --ckpt_path: continue although settings that define the run (model, algorithm, optimizer, "
            "data, seed, precision) differ from the checkpoint's; the new values are used and the change is "
            f"recorded in <run>/{CHANGES_FILE}. Without it such a command is refused.",
        )
        if subcommand in ("validate", "test"):
            # One compact table (lightning_modules/eval_summary.py) instead of Lightning's, which repeats every
            # score once per evaluation dataloader; `--verbose true` brings it back.
            parser.set_defaults(verbose=False)
            parser.add_argument(
                "--untrained",
                type=bool,
                default=False,
                help="Evaluate the model as constructed (pretrained backbone, untrained heads) when no --ckpt_path "
                "is given; without it such a command is refused.",
            )
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        problem = check_config_files(sys.argv[1:] if args is None else args)
        if problem:
            parser.error(problem)
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI would replace the command's model section with the checkpoint's hyperparameters, so a
        resume would silently train what the checkpoint was rather than what the command says. The command's
        configuration is kept, and compared with the checkpoint's in before_instantiate_classes."""

    # --------------------------------------------------------- before any work
    def before_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        config = self.config[self.subcommand]
        allow_changes = bool(config.get("allow_changed_config"))
        config["allow_changed_config"] = False  # never recorded: a later resume from config.yaml must ask again
        if self.subcommand != "fit":
            self.save_config_callback = None  # validate/test must not overwrite the training run's config.yaml
        if self.subcommand == "fit":
            check_training_length(config["trainer"])
        self._run_config = defining_config(self._plain_config(config))
        ckpt_path = config.get("ckpt_path")
        if self.subcommand in ("validate", "test"):
            if ckpt_path == "best":
                ckpt_path = config["ckpt_path"] = best_checkpoint(config.get("config"))
            if ckpt_path is None and not config.get("untrained"):
                raise ValueError(
                    f"`{self.subcommand}` without --ckpt_path would score the untrained model (pretrained "
                    "backbone, random heads). Give --ckpt_path <run>/checkpoints/<file>.ckpt (or `best` with "
                    "--config <run>/config.yaml), or --untrained true to score the untrained model on purpose"
                )
        if ckpt_path in LIGHTNING_CKPT_KEYWORDS:
            raise ValueError(
                f"--ckpt_path {ckpt_path} is not supported here (Lightning would look for it in a new run directory "
                "and could start from scratch without a word); give the file: <run>/checkpoints/last.ckpt"
            )
        if ckpt_path is not None:
            self._checkpoint = read_checkpoint(ckpt_path)
            keys = DEFINING_KEYS if self.subcommand == "fit" else EVALUATION_KEYS
            self._changes = self._compare_with_checkpoint(keys, ckpt_path, allow_changes)
        logger = config["trainer"].get("logger")
        if logger in (None, True) or is_run_logger(logger, ckpt_path):
            root = config["trainer"].get("default_root_dir") or "logs"
            config["trainer"]["logger"] = default_logger(config.get("config"), ckpt_path, root)

    def _compare_with_checkpoint(
        self, keys: tuple[str, ...], ckpt_path: str, allow_changes: bool
    ) -> list[tuple[str, Any, Any]]:
        saved = (self._checkpoint or {}).get("multitask", {}).get("run_config")
        if saved is None:
            rank_zero_only(print)(
                f"note: {ckpt_path} records no run settings (written by an earlier version); only its task set "
                "and algorithm are checked against this command",
                file=sys.stderr,
            )
            return []
        changed = differences({k: saved.get(k) for k in keys}, {k: self._run_config[k] for k in keys})
        fixed = [change for change in changed if is_fixed(change[0])]
        if fixed and self.subcommand == "fit":
            raise ValueError(
                f"--ckpt_path {ckpt_path} belongs to a run with other settings that a resume cannot change "
                f"(checkpoint -> command):\n{format_differences(fixed)}\nThe random streams and the learning-rate "
                "schedule continue from the checkpoint and another algorithm cannot take over this one's state: "
                "resume with the run's own values (--config <run>/config.yaml), or start a new run"
            )
        if changed and not allow_changes:
            raise ValueError(
                f"--ckpt_path {ckpt_path} belongs to a run whose settings differ from this command's "
                f"({len(changed)} setting{'s' if len(changed) > 1 else ''}, checkpoint -> command):\n"
                f"{format_differences(changed)}\n"
                "Resume with the run's own settings (--config <run>/config.yaml), or pass --allow_changed_config "
                f"true to continue with the command's values on purpose (recorded in <run>/{CHANGES_FILE})"
            )
        return changed

    def _plain_config(self, config: Any) -> dict[str, Any]:
        return yaml.safe_load(self._parser(self.subcommand).dump(config, skip_none=False, format="yaml"))

    def after_instantiate_classes(self) -> None:
        # Fail on incompatible checkpoint/model/data/algorithm before any data is prepared, any file is
        # written into the log directory (config.yaml) or any step is taken.
        config = self.config[self.subcommand] if self.subcommand else self.config
        performance = from_config(config.get("performance"))
        if self.subcommand == "fit":
            # recorded, not compared: a resume may change it, but is then not bitwise (warned about)
            self.model.run_config = {**self._run_config, "performance.matmul_precision": performance.matmul_precision}
            warn_matmul_precision_change(self._checkpoint, performance.matmul_precision)
            prefix = "optimizer.init_args."
            self.model.optimizer_overrides = sorted(
                k[len(prefix) :] for k, _, _ in self._changes if k.startswith(prefix)
            )
        if self._checkpoint is not None:
            ckpt_path = self.config[self.subcommand]["ckpt_path"]
            check_checkpoint_compatible(self._checkpoint, self.datamodule.task_names, self.model.algorithm, ckpt_path)
        self.model.model.check_tasks(self.datamodule.eval_task_names())
        self.datamodule.attach_schedule(self.model.algorithm.schedule())
        performance.apply(self.model, self.datamodule)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        check_strategy(trainer.strategy)
        if self.subcommand == "fit":
            self.preemption = PreemptionCheckpoint()
            trainer.callbacks.insert(0, self.preemption)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    # ------------------------------------------------------------------ running
    def _run_subcommand(self, subcommand: str) -> None:
        lock = self._lock_run_directory()
        try:
            if lock is not None and self._changes:
                record_changes(lock.run_dir, self._changes, self._checkpoint, self.config[subcommand]["ckpt_path"])
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            raise StoppedBySignal(128 + signal.SIGTERM) from None
        finally:
            if lock is not None:
                lock.release()
        if self.preemption is not None and self.preemption.stopped_by is not None:
            signum = self.preemption.stopped_by
            last = next(c for c in self.trainer.checkpoint_callbacks if isinstance(c, FinalStepCheckpoint))
            run = Path(last.last_model_path).parent.parent
            rank_zero_only(print)(
                f"{signal.Signals(signum).name}: training stopped at step {self.preemption.stopped_at_step}, saved in "
                f"{last.last_model_path}. Resume with:\n  python train.py fit --config {run / 'config.yaml'} "
                f"--ckpt_path {last.last_model_path}",
                file=sys.stderr,
            )
            raise StoppedBySignal(128 + signum)

    def _lock_run_directory(self) -> RunLock | None:
        if rank_zero_only.rank != 0 or self.trainer.logger is None:
            return None
        lock = RunLock(self.trainer.logger.log_dir)
        lock.acquire()
        return lock


def warn_matmul_precision_change(checkpoint: dict[str, Any] | None, now: str) -> None:
    """A resume under another float32 matmul precision continues, but its arithmetic differs from the run's."""
    saved = ((checkpoint or {}).get("multitask", {}).get("run_config") or {}).get("performance.matmul_precision")
    if saved is not None and saved != now:
        rank_zero_only(print)(
            f"warning: the checkpoint was trained with performance.matmul_precision={saved}, this resume uses {now}: "
            "float32 matrix products round differently, so the resumed run is not bitwise the one it continues",
            file=sys.stderr,
        )


def check_training_length(trainer: Any) -> None:
    """max_steps 0 or max_epochs 0 would end at once, save a checkpoint and exit 0 as if trained."""
    for key in ("max_steps", "max_epochs"):
        value = trainer.get(key)
        if value is not None and value != -1 and value < 1:
            raise ValueError(f"trainer.{key} must be positive (or -1 for no limit), got {value}")


def record_changes(run_dir: Path, changed: list[tuple[str, Any, Any]], checkpoint: Any, ckpt_path: str) -> None:
    """Appends this resume's setting changes to <run>/config_changes.yaml (rewritten atomically)."""
    path = Path(run_dir) / CHANGES_FILE
    history = yaml.safe_load(path.read_text()) if path.is_file() else None
    entry = {
        "resumed_from": str(ckpt_path),
        "at_step": int((checkpoint or {}).get("global_step", 0)),
        "changed": {key: {"old": old, "new": new} for key, old, new in changed},
    }
    atomic_write_text(path, yaml.safe_dump([*(history or []), entry], sort_keys=False))
