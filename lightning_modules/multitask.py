"""MultiTaskModule: a TaskModel trained by an Algorithm under manual optimization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric

from lightning_modules.algorithms.base import Algorithm
from lightning_modules.distributed import all_reduce_mean, all_reduce_sum
from lightning_modules.errors import NonFiniteLossError, NonFiniteParametersError
from lightning_modules.eval_summary import format_results
from lightning_modules.models.base import TaskModel
from lightning_modules.precision import check_training_precision
from lightning_modules.step_logging import StepLog, deferrable, logs_due
from lightning_modules.strategies import check_strategy

StepListener = Callable[["MultiTaskModule", str, list[str]], None]


class MultiTaskModule(pl.LightningModule):
    """Runs `algorithm.training_step` (one optimizer step each) and evaluates every task.

    The inner optimizer comes from LightningCLI's `optimizer:` section (AdamW, lr 3e-5 by default). Every
    `trainer.precision` trains except bf16-true and 16-true, refused at fit (`lightning_modules.precision`).

    Args:
        model: the multi-task model (`forward(task, batch)` gives the loss).
        algorithm: the update rule (MTL, PCGrad, ..., SequentialReptile).
        grad_clip_norm: clip the gradient norm of each inner step (Trainer's gradient_clip_val is not
            available under manual optimization), after fp16 gradients are unscaled. The paper does not say;
            default off.
        data: what the model may take from the data (`MultiTaskDataModule.facts()`: task names, vocabulary), set
            by the CLI from `data:`, not in a config; handed to the model (`attach_data`) before the optimizer is
            built. Not a hyperparameter: a checkpoint's state carries what the model made of it.
    """

    def __init__(
        self,
        model: TaskModel,
        algorithm: Algorithm,
        grad_clip_norm: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["data"], logger=False)
        self.automatic_optimization = False
        self.model = model
        if data is not None:
            model.attach_data(list(data["task_names"]), data["vocabulary"], data.get("class_counts"))
        self.algorithm = algorithm
        self.grad_clip_norm = grad_clip_norm
        self.task_names: list[str] = []
        self.eval_task_names: list[str] = []
        # Evaluation is split across DDP ranks by batches, so a rank may hold none of a small task's batches.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.eval_metrics = nn.ModuleDict()
        self.eval_losses = nn.ModuleDict()
        self._step_listeners: list[StepListener] = []
        # The RNG state training continues from. Training draws (dropout, PCGrad's order, ...) come from
        # their own stream, untouched by what runs between steps (validation's DataLoader draws a seed), so a
        # resumed run sees the same stream as an uninterrupted one wherever the checkpoint was taken.
        self._train_rng: dict[str, Any] | None = None
        # The settings that define the run (set by the CLI), saved in every checkpoint so that a resume can be
        # compared with the run it continues.
        self.run_config: dict[str, Any] | None = None
        # Optimizer arguments a resume changed on purpose: the restored optimizer state would otherwise keep the
        # checkpoint's values in its parameter groups.
        self.optimizer_overrides: list[str] = []
        self._step_log = StepLog()
        # Whether the step's task losses are checked for NaN with the parameters, in one host sync at the end of the
        # step (default on accelerators, where each check would stall the host), rather than each as it is computed,
        # before the parameters are touched (default on a CPU, where the check costs nothing).
        self.check_losses_at_step_end: bool | None = None
        self._step_losses: list[tuple[str, torch.Tensor]] | None = None

    # ----------------------------------------------------------------- wiring
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "task_names"):
            raise ValueError("MultiTaskModule needs a MultiTaskDataModule (data: in the config)")
        self.task_names = list(datamodule.task_names)
        self.eval_task_names = list(datamodule.eval_task_names())
        self.model.check_tasks(self.eval_task_names)
        check_strategy(self.trainer.strategy)
        if stage == "fit":
            check_training_precision(self.trainer.precision_plugin)
            datamodule.attach_schedule(self.algorithm.schedule())
        for name in self.eval_task_names:
            if name not in self.eval_metrics:
                options = datamodule.task(name).metric_options()
                self.eval_metrics[name] = self.model.eval_metrics(name, **options).to(self.device)
                self.eval_losses[name] = MeanMetric().to(self.device)

    def on_fit_start(self) -> None:
        self.algorithm.setup(self)

    def on_train_start(self) -> None:
        if self.optimizer_overrides:
            optimizer = self.optimizers().optimizer
            for group in optimizer.param_groups:
                group.update({name: optimizer.defaults[name] for name in self.optimizer_overrides})

    def add_step_listener(self, listener: StepListener) -> None:
        """Callbacks that must see every inner step / outer update (the trajectory plot) register here."""
        self._step_listeners.append(listener)

    def emit(self, phase: str, tasks: list[str]) -> None:
        """Algorithms call this after each optimizer step (`inner`/`step`) and outer update (`outer`)."""
        for listener in self._step_listeners:
            listener(self, phase, tasks)

    # ----------------------------------------------------------- algorithm API
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def task_loss(self, task: str, batch: Any) -> torch.Tensor:
        loss = self.model(task, batch).loss
        if self._step_losses is not None:
            self._step_losses.append((task, loss.detach()))
        elif not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) on task '{task}' at training step {self.global_step + 1} "
                f"(after {self.global_step} completed optimizer steps); training stopped before the parameters "
                "were updated, the last saved checkpoint is kept"
            )
        self.log(f"train/{task}/loss", loss.detach(), on_step=True, on_epoch=False, batch_size=1)
        return loss

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """Lightning's `log`; per-step training values wait for a step whose logs are written
        (`lightning_modules.step_logging`)."""
        if deferrable(self._current_fx_name, args, kwargs):
            self._step_log.defer(name, value, kwargs)
            return
        super().log(name, value, *args, **kwargs)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._step_log.pending and logs_due(self.trainer):
            self._step_log.flush(super().log)

    def on_train_epoch_start(self) -> None:
        self._step_log.clear()  # Lightning starts each epoch's training results afresh

    def optimizer_step(self) -> None:
        """One inner optimizer step from the gradients in `.grad` (counted by Lightning's global_step); the
        gradients are clipped in `on_before_optimizer_step`."""
        optimizer = self.optimizers()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clips `grad_clip_norm` here, inside the step: after the precision plugin unscaled fp16 gradients."""
        if self.grad_clip_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm")

    def reset_optimizer_state(self) -> None:
        self.optimizers().optimizer.state.clear()

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average over DDP ranks (a no-op on one process); for gradients computed with autograd.grad. One
        all-reduce without the barrier Lightning's `strategy.reduce` puts before each one (`distributed.py`)."""
        return all_reduce_mean(tensor, self.trainer.world_size)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: list[tuple[str, Any]], batch_idx: int) -> torch.Tensor:
        if self._train_rng is not None:
            _set_rng_state(self._train_rng, self.device)
        at_end = self.check_losses_at_step_end
        self._step_losses = [] if (self.device.type != "cpu" if at_end is None else at_end) else None
        step = self.global_step + 1
        try:
            loss = self.algorithm.training_step(self, batch)
        finally:
            losses, self._step_losses = self._step_losses or [], None
        self._check_finite_step(step, losses, [task for task, _ in batch])
        self._train_rng = _get_rng_state(self.device)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=1)
        return loss

    def _check_finite_step(self, step: int, losses: list[tuple[str, torch.Tensor]], tasks: list[str]) -> None:
        """The step's losses (when not checked as they came) and its update, in one host sync: a finite loss can
        still give a non-finite update (an overflowing gradient or learning rate)."""
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        # One sum per tensor (NaN and ±inf survive a sum): a few ms per step on a 44 M parameter model on CPU,
        # where an elementwise isfinite costs ~100x more.
        flags = [torch.isfinite(torch.stack([_wide_sum(p.detach()) for _, p in named]))] if named else []
        flags += [torch.isfinite(loss).reshape(1) for _, loss in losses]
        if not flags or bool(torch.cat(flags).all()):
            return
        for task, loss in losses:
            if not bool(torch.isfinite(loss)):
                raise NonFiniteLossError(
                    f"non-finite loss ({loss.item()}) on task '{task}' at training step {step} (after {step - 1} "
                    "completed optimizer steps); training stopped before this step was saved, the last saved "
                    "checkpoint is kept"
                )
        bad = [n for n, p in named if not bool(torch.isfinite(p.detach()).all())] or ["sums beyond float range"]
        raise NonFiniteParametersError(
            f"training step {self.global_step} (tasks {', '.join(dict.fromkeys(tasks))}) made parameters NaN "
            f"or infinite ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); training stopped, and the "
            "checkpoints on disk keep the last state saved before it. Lower the learning rate or set "
            "model.grad_clip_norm"
        )

    # -------------------------------------------------------------- evaluation
    def on_validation_epoch_start(self) -> None:
        self._eval_ctx = self.algorithm.evaluation_weights(self)
        self._eval_ctx.__enter__()

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")
        self._eval_ctx.__exit__(None, None, None)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")
        self._eval_ctx.__exit__(None, None, None)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        task = self.eval_task_names[dataloader_idx]
        output = self.model(task, batch)
        self.eval_losses[task].update(output.loss.detach())
        self.model.update_metrics(self.eval_metrics[task], output)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_idx, dataloader_idx)

    def _evaluated_tasks(self) -> list[str]:
        """The tasks with at least one evaluated batch on any rank. Evaluation is split across DDP ranks by batches
        (`datamodules/eval_sharding.py`), so a rank may hold none of a small task's batches and must still join
        the reduction of its metrics: the decision is taken from every rank's counts (one all-reduce)."""
        counts = torch.tensor([self.eval_losses[t].update_count for t in self.eval_task_names], device=self.device)
        counts = all_reduce_sum(counts).tolist()
        return [task for task, count in zip(self.eval_task_names, counts, strict=True) if count > 0]

    def _log_eval(self, split: str) -> None:
        values: dict[str, float] = {}
        groups: dict[str, dict[str, list[float]]] = {"avg": {}, "zero_shot_avg": {}}
        for task in self._evaluated_tasks():
            results = {"loss": self.eval_losses[task].compute()}
            results.update(_flatten(self.eval_metrics[task].compute()) if len(self.eval_metrics[task]) else {})
            group = "avg" if task in self.task_names else "zero_shot_avg"
            for metric, value in results.items():
                values[f"{split}/{task}/{metric}"] = float(value)
                groups[group].setdefault(metric, []).append(float(value))
            self.eval_losses[task].reset()
            self.eval_metrics[task].reset()
        for group, metrics in groups.items():
            for metric, vals in metrics.items():
                values[f"{split}/{group}/{metric}"] = sum(vals) / len(vals)
        for key, value in values.items():
            self.log(key, value, add_dataloader_idx=False, sync_dist=False)
        if self.trainer.is_global_zero and self.trainer.state.fn in ("validate", "test"):
            zero_shot = [t for t in self.eval_task_names if t not in self.task_names]
            table = format_results(values, split, self.task_names, zero_shot)
            if table:
                print(table)

    # ----------------------------------------------------------- checkpointing
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["multitask"] = {
            "task_names": self.task_names,
            "algorithm": type(self.algorithm).__name__,
            "algorithm_state": self.algorithm.state_dict(),
            "rng": {"ranks": self._gather_rng()},
            "run_config": self.run_config,
        }
        where = first_non_finite(
            {k: checkpoint.get(k) for k in ("state_dict", "optimizer_states")}
            | {"algorithm_state": checkpoint["multitask"]["algorithm_state"]}
        )
        if where is not None:
            raise NonFiniteParametersError(
                f"refusing to write a checkpoint at step {self.global_step}: {where} is NaN or infinite; the "
                "checkpoints on disk keep the last finite state"
            )

    def _gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's training RNG, in rank order (Lightning writes rank 0's checkpoint only; each rank's
        dropout stream is its own)."""
        state = self._train_rng if self._train_rng is not None else _get_rng_state(self.device)
        if self._trainer is None or self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return [state]
        states: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(states, state)
        return states

    def _rank_rng(self, saved: dict[str, Any]) -> dict[str, Any]:
        """This rank's saved RNG. With another number of processes than the checkpoint's, a rank without a saved
        stream takes the last one (such a resume cannot be bitwise exact anyway: the data shards differ)."""
        if "ranks" not in saved:  # written by an earlier version: rank 0's state for every rank
            return saved
        ranks = saved["ranks"]
        rank = self.trainer.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        if len(ranks) != world:
            rank_zero_warn(
                f"the checkpoint holds the RNG of {len(ranks)} process(es), this run has {world}: ranks without "
                "a saved stream continue the last rank's (the data shards differ too, so this resume is not exact)"
            )
        return ranks[min(rank, len(ranks) - 1)]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        current = list(datamodule.task_names) if datamodule is not None else None
        saved = check_checkpoint_compatible(checkpoint, current, self.algorithm)
        self.algorithm.load_state_dict(saved["algorithm_state"])
        self._train_rng = self._rank_rng(saved["rng"])


def check_checkpoint_compatible(
    checkpoint: dict[str, Any], task_names: list[str] | None, algorithm: Algorithm, source: str = "checkpoint"
) -> dict[str, Any]:
    """The checkpoint's `multitask` entry, or a clear error if it was made for another task set or algorithm.

    Also called by the CLI before anything is instantiated into the log directory, so a wrong resume leaves
    the existing checkpoint and logs untouched."""
    saved = checkpoint.get("multitask")
    if saved is None:
        raise ValueError(f"{source} was not written by MultiTaskModule (no 'multitask' entry)")
    if task_names is not None and list(saved["task_names"]) != list(task_names):
        raise ValueError(
            f"{source} was made with tasks {list(saved['task_names'])}, but this run has {list(task_names)}; "
            "resume with the same task set (data.tasks) as the checkpoint"
        )
    if saved["algorithm"] != type(algorithm).__name__:
        raise ValueError(
            f"{source} was made with algorithm {saved['algorithm']}, but this run uses {type(algorithm).__name__}"
        )
    return saved


def first_non_finite(node: Any, where: str = "") -> str | None:
    """The path of the first floating-point tensor holding a NaN or an infinity in a nested state, or None
    (checked through its sum, which a NaN or an infinity always reaches)."""
    if isinstance(node, torch.Tensor):
        if node.is_floating_point() and node.numel() and not bool(torch.isfinite(_wide_sum(node))):
            return where
        return None
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _wide_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum in at least float32, so that finite half-precision values cannot overflow it."""
    return tensor.sum(dtype=torch.float64 if tensor.dtype == torch.float64 else torch.float32)


def _flatten(results: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k.split("/")[-1] if "/" in k else k: v for k, v in results.items()}


def _get_rng_state(device: torch.device) -> dict[str, Any]:
    """This process's training RNG: the CPU generator and, on a GPU, that device's generator only (the others
    are other ranks' or unused, and a resume may see fewer GPUs)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if device.type != "cuda" or cuda is None:
        return
    if isinstance(cuda, (list, tuple)):  # written by an earlier version: every visible GPU's state
        index = device.index or 0
        if index >= len(cuda):
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)
