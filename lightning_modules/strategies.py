"""Which of Lightning's training strategies this template runs under, and why sharded ones are refused."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

SHARDED = (FSDPStrategy, ModelParallelStrategy)


def check_strategy(strategy: Any) -> None:
    """Refuses strategies that shard parameters (FSDP, FSDP2/ModelParallel, DeepSpeed), naming the fix.

    Under sharding, `torch.autograd.grad` with respect to a sharded parameter returns None, so the per-task
    gradients of PCGrad, GradVac, GradNorm and the torchjd aggregators would be zeros without an error; the
    analysis callbacks that run forward passes on rank 0 only would wait forever for the other ranks'
    all-gathers; and the checkpoint checks (finite state, every rank's RNG, the atomic single-file save) read a
    full state dict on rank 0. DDP keeps a full copy of the parameters on every rank and has none of these
    problems: mBERT-base with AdamW and the φ copy needs about 5 GB besides activations.
    """
    name = type(strategy).__name__
    if isinstance(strategy, SHARDED) or "DeepSpeed" in name:
        raise ValueError(
            f"trainer.strategy {name} shards the parameters, which this template does not support: the per-task "
            "gradients (torch.autograd.grad) of sharded parameters are None, and the callbacks that run on rank 0 "
            "only would deadlock. Use --trainer.strategy ddp (or ddp_find_unused_parameters_true for per-task "
            "heads): every method fits with a full copy of mBERT-base per GPU"
        )
