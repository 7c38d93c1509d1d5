"""Resumable training streams: per-task shuffled batches, and the scheduled multi-task loader."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from datamodules.schedule import TaskSampler

MultiTaskBatch = list[tuple[str, Any]]


class TaskStream:
    """Endless shuffled batches of one task, reshuffled each pass, sharded by rank.

    The order is a pure function of (seed, task name, pass), so a saved cursor restores it exactly.
    Every rank walks the same permutation and takes every `world_size`-th example.
    """

    def __init__(
        self,
        name: str,
        dataset: Sequence[Any],
        batch_size: int,
        collate: Callable[[list[Any]], Any],
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(dataset) == 0:
            raise ValueError(f"task '{name}' has an empty training split")
        self.name, self.dataset, self.batch_size, self.collate = name, dataset, batch_size, collate
        self.seed = seed + zlib.crc32(name.encode())
        self.rank, self.world_size = rank, world_size
        self.epoch, self.cursor = 0, 0
        self._order_epoch = -1
        self._order: list[int] = []

    def _shard(self) -> list[int]:
        if self._order_epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
            perm = torch.randperm(len(self.dataset), generator=generator).tolist()
            per_rank = math.ceil(len(perm) / self.world_size)
            perm = (perm * (1 + per_rank * self.world_size // len(perm)))[: per_rank * self.world_size]
            self._order, self._order_epoch = perm[self.rank :: self.world_size], self.epoch
        return self._order

    def next_batch(self) -> Any:
        indices: list[int] = []
        while len(indices) < self.batch_size:
            order = self._shard()
            take = order[self.cursor : self.cursor + self.batch_size - len(indices)]
            indices.extend(take)
            self.cursor += len(take)
            if self.cursor >= len(order):
                self.epoch, self.cursor = self.epoch + 1, 0
        return self.collate([self.dataset[i] for i in indices])

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]


class ScheduledLoader:
    """The training loader: each item is one optimizer step's `[(task, batch), ...]`.

    It has a length (so Lightning does not prefetch and the saved position is exact) and a
    state_dict (so Lightning stores it in checkpoints and restores it mid-epoch).
    """

    def __init__(self, sampler: TaskSampler, streams: dict[str, TaskStream], steps_per_epoch: int) -> None:
        self.sampler, self.streams, self.steps_per_epoch = sampler, streams, steps_per_epoch
        self.position = 0

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[MultiTaskBatch]:
        if self.position >= self.steps_per_epoch:
            self.position = 0
        while self.position < self.steps_per_epoch:
            tasks = self.sampler.next_tasks()
            batch = [(task, self.streams[task].next_batch()) for task in tasks]
            self.position += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "sampler": self.sampler.state_dict(),
            "streams": {name: stream.state_dict() for name, stream in self.streams.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if sorted(state["streams"]) != sorted(self.streams):
            raise ValueError(
                f"checkpoint was made with tasks {sorted(state['streams'])}, but this run has {sorted(self.streams)}"
            )
        self.position = state["position"]
        self.sampler.load_state_dict(state["sampler"])
        for name, stream_state in state["streams"].items():
            self.streams[name].load_state_dict(stream_state)
