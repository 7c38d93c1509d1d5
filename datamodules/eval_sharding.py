"""Validation and test split across DDP ranks by whole batches, so that the metrics stay exact.

Lightning's `DistributedSampler` pads each rank's share by repeating examples and re-batches them, which would
count some examples twice and change which examples share a batch. Here rank r evaluates batches r, r + W,
r + 2W, ... of the single-process loader (W ranks): every example is evaluated once, in the same batch as in one
process, and the metrics' states (sums, counts, gathered pairs) are reduced across ranks when they are computed.
A rank may get fewer batches than another, or none; `MultiTaskModule` decides which tasks were evaluated from the
counts of every rank together.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sized

from torch.utils.data import DataLoader, Sampler


class ShardedBatches(Sampler[list[int]]):
    """Every `world_size`-th batch of `batches`, starting at `rank`."""

    def __init__(self, batches: Iterable[list[int]], rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batches), self.rank, None, self.world_size)

    def __len__(self) -> int:
        total = len(self.batches)  # type: ignore[arg-type]
        return max(0, -(-(total - self.rank) // self.world_size))


def shard_eval_loader(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    """This rank's batches of an evaluation loader (the loader itself in one process)."""
    if world_size == 1:
        return loader
    batches = loader.batch_sampler
    if batches is None or not isinstance(batches, Sized):
        raise ValueError(
            "an evaluation DataLoader without a sized batch sampler (batch_size=None or an iterable dataset) "
            "cannot be split across ranks exactly: give it a batch_size"
        )
    return DataLoader(
        loader.dataset,
        batch_sampler=ShardedBatches(batches, rank, world_size),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )
