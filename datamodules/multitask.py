"""MultiTaskDataModule: combines per-task datamodules and realises the algorithm's task schedule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from datamodules.eval_sharding import shard_eval_loader
from datamodules.schedule import IIDSchedule, ScheduleSpec, TaskSampler
from datamodules.streams import ScheduledLoader, TaskStream
from datamodules.task import TaskDataModule

if TYPE_CHECKING:
    from pretrained.vocabulary import Vocabulary


class MultiTaskDataModule(pl.LightningDataModule):
    """Training tasks (sampled by the schedule) plus optional zero-shot tasks (evaluated only).

    Args:
        tasks: one datamodule per training task; names must be unique.
        zero_shot_tasks: tasks never trained on, evaluated in validation and test (paper Table 3).
        seed: seeds the task order and every task's shuffling; the same on every DDP rank.
        steps_per_epoch: optimizer steps per epoch; default: one pass over all training examples.
    """

    def __init__(
        self,
        tasks: list[TaskDataModule],
        zero_shot_tasks: list[TaskDataModule] | None = None,
        seed: int = 1234,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("the task list is empty: give at least one training task under data.tasks")
        self.tasks = list(tasks)
        self.zero_shot_tasks = list(zero_shot_tasks or [])
        names = [t.name for t in self.tasks + self.zero_shot_tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"task names must be unique, repeated: {', '.join(duplicates)}")
        _check_language_files(self.tasks + self.zero_shot_tasks)
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.schedule: ScheduleSpec | None = None
        # How training batches are read (the CLI's `performance:` section sets them; they change no batch): worker
        # processes collating ahead of the step, and page-locked memory (None: when training on a CUDA device).
        self.loader_workers = 0
        self.pin_memory: bool | None = None

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def zero_shot_task_names(self) -> list[str]:
        return [t.name for t in self.zero_shot_tasks]

    def task(self, name: str) -> TaskDataModule:
        for t in self.tasks + self.zero_shot_tasks:
            if t.name == name:
                return t
        raise KeyError(f"unknown task '{name}'; known: {', '.join(self.task_names + self.zero_shot_task_names)}")

    def facts(self) -> dict[str, Any]:
        """What a model may take from the data instead of a second list in its config: `task_names` (training,
        then zero-shot), `vocabulary` and `class_counts` (the tasks that define theirs). The CLI links it to
        `MultiTaskModule(data=...)`."""
        counts = {t.name: t.class_count() for t in self._eval_tasks()}
        return {
            "task_names": self.eval_task_names(),
            "vocabulary": self.vocabulary(),
            "class_counts": {name: n for name, n in counts.items() if n is not None},
        }

    def vocabulary(self) -> Vocabulary | None:
        """What the model's vocabulary may be trimmed to: the corpora of every task, seen and zero-shot (a
        zero-shot language trimmed away would read `<unk>`). None unless every task names its corpus. Part of
        `facts()`, so the languages are listed in the data only."""
        from datamodules.bible_vocab import combine_vocabularies

        vocabularies = [task.vocabulary() for task in self.tasks + self.zero_shot_tasks]
        if any(v is None for v in vocabularies):
            return None
        return combine_vocabularies([v for v in vocabularies if v is not None])

    def attach_schedule(self, schedule: ScheduleSpec) -> None:
        """Called by the module in `setup`: the algorithm decides how tasks are drawn."""
        if isinstance(schedule, IIDSchedule) and schedule.tasks_per_step > len(self.tasks):
            raise ValueError(
                f"tasks_per_step={schedule.tasks_per_step} is larger than the number of training tasks "
                f"({len(self.tasks)}: {', '.join(self.task_names)})"
            )
        self.schedule = schedule

    def prepare_data(self) -> None:
        for task in self.tasks + self.zero_shot_tasks:
            task.prepare_data()

    def setup(self, stage: str) -> None:
        for task in self.tasks:
            task.setup(stage)
        for task in self.zero_shot_tasks:
            task.setup("validate" if stage == "fit" else stage)
        if stage == "fit":
            for task in self.tasks:
                if task.num_train_examples() == 0:
                    raise ValueError(f"task '{task.name}' has an empty training split")

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> ScheduledLoader:
        if self.schedule is None:
            raise RuntimeError("no task schedule attached: MultiTaskModule.setup attaches the algorithm's schedule")
        rank, world_size = self._world()
        sizes = [t.num_train_examples() for t in self.tasks]
        sampler = TaskSampler(self.schedule, self.task_names, sizes, seed=self.seed)
        streams = {
            t.name: TaskStream(t.name, t.train_dataset, t.batch_size, t.collate, self.seed, rank, world_size)  # type: ignore[arg-type]
            for t in self.tasks
        }
        steps = self.steps_per_epoch
        if steps is None:
            tasks_per_step = self.schedule.tasks_per_step if isinstance(self.schedule, IIDSchedule) else 1
            mean_batch = sum(t.batch_size for t in self.tasks) / len(self.tasks)
            steps = max(1, math.ceil(sum(sizes) / (mean_batch * tasks_per_step * world_size)))
        pin = self.pin_memory
        if pin is None:
            pin = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return ScheduledLoader(sampler, streams, steps, num_workers=self.loader_workers, pin_memory=pin)

    def _eval_tasks(self) -> list[TaskDataModule]:
        """The tasks evaluated, in the order of the validation/test dataloaders: training tasks, then zero-shot."""
        return self.tasks + self.zero_shot_tasks

    def eval_task_names(self) -> list[str]:
        return [t.name for t in self._eval_tasks()]

    def val_dataloader(self) -> list[DataLoader]:
        """Each task's validation loader; under DDP each rank evaluates its own share of the batches."""
        return [shard_eval_loader(t.val_dataloader(), *self._world()) for t in self._eval_tasks()]

    def test_dataloader(self) -> list[DataLoader]:
        return [shard_eval_loader(t.test_dataloader(), *self._world()) for t in self._eval_tasks()]


def _check_language_files(tasks: list[TaskDataModule]) -> None:
    """Two languages reading one single-language file is a config error (typically a `data_files` written into
    a YAML anchor, and so copied to every language): refused, naming both tasks and the file."""
    readers: dict[str, tuple[str, str]] = {}
    for task in tasks:
        language, files = task.single_language_files()
        for path in files:
            name, other = readers.setdefault(path, (task.name, language or ""))
            if other != language:
                raise ValueError(
                    f"tasks '{name}' (language {other}) and '{task.name}' (language {language}) read the same file "
                    f"{path}; give each language its own data_files (a data_files inside a YAML anchor is copied to "
                    "every task that merges it)"
                )
