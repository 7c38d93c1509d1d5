"""The forced `checkpoint:` callback: last.ckpt always holds the newest state of the run, in the run directory,
whatever path form a resume used and wherever the run directory was moved or copied to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class FinalStepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint with the guarantees the run lifecycle relies on.

    - last.ckpt is written at the end of training, after the final validation, so it holds the final step and
      the best checkpoint that validation chose (Lightning 2.6 writes it at the end only if nothing was saved
      during the run, and a save at the last step precedes that step's validation).
    - On resume, every ModelCheckpoint of the run keeps its record (best score, best and last paths) when the
      checkpoint directory is the one resumed from under another spelling (relative or absolute, a symlink) or
      after the run directory was moved or copied. Lightning compares the directories as strings, drops the
      record on any difference and then writes last-v1.ckpt next to a last.ckpt that stays old.
    - Its own record is found again after a resume that changed its interval (Lightning keys a callback's state
      by its arguments, which dropped the record with the same consequence).
    - A run stopped inside an epoch (max_steps, a signal) is saved as that epoch in progress.
    - Settings that would leave a run without a resumable last.ckpt are refused.
    """

    STATE_KEY = "FinalStepCheckpoint"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saving_at_end = False
        if self.save_last is not True:
            raise ValueError(
                f"checkpoint.save_last must be true (got {self.save_last!r}): resume, preemption and "
                "`--ckpt_path best` all read the run's checkpoints/last.ckpt"
            )
        steps = kwargs.get("every_n_train_steps")
        if steps is not None and steps < 1:
            raise ValueError(
                f"checkpoint.every_n_train_steps must be a positive number of steps (got {steps}; 0 would save "
                "last.ckpt only at the end, so a killed run would lose everything): e.g. 100"
            )
        if self.save_on_exception:
            raise ValueError(
                "checkpoint.save_on_exception must be false: an exception can come mid-step or from a non-finite "
                "update, and that state must not replace the last good last.ckpt (SIGTERM and SIGINT are saved "
                "at the end of the current step instead)"
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run:
            return super().on_train_end(trainer, pl_module)
        self._saving_at_end = True
        try:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        finally:
            self._saving_at_end = False

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._saving_at_end and stopped_mid_epoch(trainer):
            reopen_epoch(checkpoint)

    @property
    def state_key(self) -> str:
        return self.STATE_KEY

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        resumed_from = Path(str(trainer.ckpt_path)).resolve() if trainer.ckpt_path else None
        states = checkpoint.get("callbacks", {})
        if self.state_key not in states:  # written with another interval, or before the key was fixed
            found = [key for key in states if key.startswith(self.STATE_KEY)]
            if found:
                states[self.state_key] = states[found[0]]
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key) if isinstance(callback, ModelCheckpoint) else None
            if state and callback.dirpath and state.get("dirpath") not in (None, callback.dirpath):
                if same_run_directory(Path(state["dirpath"]), Path(callback.dirpath), resumed_from):
                    states[callback.state_key] = relocate(state, callback.dirpath)


def stopped_mid_epoch(trainer: pl.Trainer) -> bool:
    """Training ended (max_steps, a signal) before the epoch's last batch."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    return done < trainer.num_training_batches


def reopen_epoch(checkpoint: dict[str, Any]) -> None:
    """Lightning counts an epoch as completed when training stops inside it (at max_steps or on a signal), so a
    resume under max_epochs would end at once instead of finishing the epoch; the saved counters are set back
    to the epoch in progress, which is what the loaders' saved positions say."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
    for counters in (progress["total"], progress["current"]):
        counters["processed"] -= 1
        counters["completed"] -= 1
    checkpoint["epoch"] -= 1


def same_run_directory(saved: Path, current: Path, resumed_from: Path | None) -> bool:
    """The saved checkpoint directory is the current one: the same directory under another spelling, or the
    directory the checkpoint being resumed lies in (the run was moved or copied there)."""
    if saved.resolve() == current.resolve():
        return True
    return resumed_from is not None and resumed_from.parent == current.resolve()


def relocate(state: dict[str, Any], dirpath: str) -> dict[str, Any]:
    """A ModelCheckpoint state whose files are looked up by name in `dirpath`."""
    old = str(state["dirpath"])

    def move(path: Any) -> Any:
        if not path or Path(str(path)).parent != Path(old):
            return path
        return str(Path(dirpath) / Path(str(path)).name)

    state = dict(state, dirpath=dirpath)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = move(state[key])
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {move(path): score for path, score in state["best_k_models"].items()}
    return state
