"""SIGTERM (what SLURM and most schedulers send before preemption) and SIGINT (Ctrl+C) stop a run cleanly: the
current step finishes (an inner step of a Sequential Reptile trajectory included), as does a validation due at
that step, then training ends as it does at max_steps, so FinalStepCheckpoint writes last.ckpt at that step.
The process then exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT), so `fit && test` never
tests a half-trained model. A second Ctrl+C aborts at once, without saving (the last periodic save is kept)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StoppedBySignal(SystemExit):
    """Raised by the CLI after a run stopped by a signal saved its checkpoint; the exit code is 128 + signum."""


class PreemptionCheckpoint(Callback):
    """Turns SIGTERM / SIGINT during training into a stop at the end of the current step (all DDP ranks at the
    same step: the decision is reduced over ranks) and records which signal it was."""

    def __init__(self) -> None:
        self.received: int | None = None  # the signal this process received
        self.stopped_by: int | None = None  # the signal the run stopped for (any rank's)
        self.stopped_at_step: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = self.stopped_by = self.stopped_at_step = None
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            self._restore()
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum
            name = signal.Signals(signum).name
            print(
                f"\n{name} received: finishing the current step, then saving checkpoints/last.ckpt"
                + (" (Ctrl+C again aborts without saving)" if signum == signal.SIGINT else ""),
                file=sys.stderr,
                flush=True,
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and self.stopped_by is None:
            self.stopped_by = self.received if self.received is not None else int(signal.SIGTERM)
            self.stopped_at_step = trainer.global_step
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
