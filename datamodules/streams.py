"""Resumable training streams: per-task shuffled batches, and the scheduled multi-task loader.

The schedule (which tasks, which examples) is drawn in the main process; with `num_workers` > 0 the examples are
read and collated in DataLoader worker processes (into pinned memory on a GPU), which run ahead of training. The
state saved in a checkpoint is the one after the last batch handed to training, not after the last one a worker
prepared, so a resume sees the same batches in the same order. Randomness in reading or collating a batch (image
augmentation) draws from torch's generator seeded per batch from (data seed, task, rank, pass, position), so it is
the same with or without workers and after a resume, and never consumes the training RNG (dropout).
"""

from __future__ import annotations

import copy
import math
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

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

    def next_draw(self) -> tuple[list[int], int]:
        """The dataset indices of the next batch and the seed of its reading and collation (moves the cursor)."""
        seed = ((self.seed * 1_000_003 + self.rank) * 1_000_033 + self.epoch) * 1_000_037 + self.cursor
        return self.next_indices(), seed % 2**63

    def next_indices(self) -> list[int]:
        """The dataset indices of the next batch (moves the cursor)."""
        indices: list[int] = []
        while len(indices) < self.batch_size:
            order = self._shard()
            take = order[self.cursor : self.cursor + self.batch_size - len(indices)]
            indices.extend(take)
            self.cursor += len(take)
            if self.cursor >= len(order):
                self.epoch, self.cursor = self.epoch + 1, 0
        return indices

    def batch(self, indices: list[int], seed: int) -> Any:
        """The collated examples at `indices`, any random draw of the dataset or collate from `seed` (pure: runs in
        a DataLoader worker as well)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.collate([self.dataset[i] for i in indices])

    def next_batch(self) -> Any:
        return self.batch(*self.next_draw())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]


Plan = list[tuple[str, list[int], int]]  # one step: (task, dataset indices, batch seed) per task


class _StepBatches:
    """What a DataLoader worker sees: a step's plan in, its collated `MultiTaskBatch` out."""

    def __init__(self, streams: dict[str, TaskStream]) -> None:
        self.streams = streams

    def __getitems__(self, plan: Plan) -> MultiTaskBatch:
        return [(task, self.streams[task].batch(indices, seed)) for task, indices, seed in plan]


def _whole(batch: MultiTaskBatch) -> MultiTaskBatch:
    return batch


class ScheduledLoader:
    """The training loader: each item is one optimizer step's `[(task, batch), ...]`.

    It has a length (so Lightning does not prefetch and the saved position is exact) and a
    state_dict (so Lightning stores it in checkpoints and restores it mid-epoch).

    Args:
        num_workers: DataLoader worker processes that read and collate batches ahead of training (0: in the
            training process, when the batch is needed).
        pin_memory: collate into page-locked memory, so that the copy to the GPU can overlap compute.
        prefetch_factor: batches each worker prepares ahead.
    """

    def __init__(
        self,
        sampler: TaskSampler,
        streams: dict[str, TaskStream],
        steps_per_epoch: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
    ) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.sampler, self.streams, self.steps_per_epoch = sampler, streams, steps_per_epoch
        self.num_workers, self.pin_memory, self.prefetch_factor = num_workers, pin_memory, prefetch_factor
        self.position = 0
        self._consumed: dict[str, Any] | None = None  # the state after the last batch handed out (None: the live one)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _plans(self, states: deque[dict[str, Any]]) -> Iterator[Plan]:
        """The rest of the epoch's plans, drawn in this process; the state after each goes into `states`."""
        position = self.position
        while position < self.steps_per_epoch:
            plan = [(task, *self.streams[task].next_draw()) for task in self.sampler.next_tasks()]
            position += 1
            states.append(self._live_state(position))
            yield plan

    def __iter__(self) -> Iterator[MultiTaskBatch]:
        if self._consumed is not None:  # workers ran ahead of the last batch handed out: rewind to it
            self.load_state_dict(self._consumed)
        if self.position >= self.steps_per_epoch:
            self.position = 0
        self._consumed = self._live_state(self.position)
        states: deque[dict[str, Any]] = deque()
        plans = self._plans(states)
        if self.num_workers == 0 and not self.pin_memory:
            batches: Any = (_StepBatches(self.streams).__getitems__(plan) for plan in plans)
        else:
            batches = DataLoader(
                _StepBatches(self.streams),  # type: ignore[arg-type]
                batch_sampler=plans,  # type: ignore[arg-type]
                collate_fn=_whole,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch_factor if self.num_workers else None,
                generator=torch.Generator(),  # its worker seed is not drawn from the training RNG
            )
        for batch in batches:
            self._consumed = states.popleft()
            self.position = self._consumed["position"]
            yield batch

    def _live_state(self, position: int) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "position": position,
                "sampler": self.sampler.state_dict(),
                "streams": {name: stream.state_dict() for name, stream in self.streams.items()},
            }
        )

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch handed to training (workers may have drawn further)."""
        return copy.deepcopy(self._consumed) if self._consumed is not None else self._live_state(self.position)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if sorted(state["streams"]) != sorted(self.streams):
            raise ValueError(
                f"checkpoint was made with tasks {sorted(state['streams'])}, but this run has {sorted(self.streams)}"
            )
        self.position = state["position"]
        self.sampler.load_state_dict(state["sampler"])
        for name, stream_state in state["streams"].items():
            self.streams[name].load_state_dict(stream_state)
        self._consumed = None
