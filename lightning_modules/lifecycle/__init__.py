"""The run lifecycle: checkpoints that stay current and intact, resumes that continue the same run, preemption,
one process per run directory, and clear refusals for every file or setting that would make a run wrong."""

from lightning_modules.lifecycle.checkpoint_file import AtomicCheckpointIO, CheckpointFileError, read_checkpoint
from lightning_modules.lifecycle.checkpointing import FinalStepCheckpoint
from lightning_modules.lifecycle.preemption import PreemptionCheckpoint, StoppedBySignal
from lightning_modules.lifecycle.run_lock import RunDirectoryBusy, RunLock

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointFileError",
    "FinalStepCheckpoint",
    "PreemptionCheckpoint",
    "RunDirectoryBusy",
    "RunLock",
    "StoppedBySignal",
    "read_checkpoint",
]
