from datamodules.multitask import MultiTaskDataModule
from datamodules.schedule import BlockSchedule, IIDSchedule, TaskSampler, task_probabilities
from datamodules.synthetic import SyntheticTaskDataModule
from datamodules.task import TaskDataModule

__all__ = [
    "BlockSchedule",
    "IIDSchedule",
    "MultiTaskDataModule",
    "SyntheticTaskDataModule",
    "TaskDataModule",
    "TaskSampler",
    "task_probabilities",
]
