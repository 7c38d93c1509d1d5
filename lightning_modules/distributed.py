"""Collectives for gradients computed outside DDP's reducer (`torch.autograd.grad`), and the strategies the
per-task-gradient methods can run under.

Lightning's `strategy.reduce` puts a barrier before every all-reduce; a collective already waits for every rank,
so these call `torch.distributed.all_reduce` directly, once per flat buffer.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_reduce_mean(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean over ranks, in place when distributed (one all-reduce, no barrier); the tensor itself on one
    process."""
    if world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return tensor
    if dist.get_backend() == "nccl":  # gloo has no AVG
        dist.all_reduce(tensor, op=dist.ReduceOp.AVG)
        return tensor
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.div_(world_size) if tensor.is_floating_point() else tensor.copy_(tensor / world_size)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks, in place when distributed (one all-reduce); the tensor itself on one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
