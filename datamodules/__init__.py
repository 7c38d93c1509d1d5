from datamodules.bible import BibleGenreTask
from datamodules.bible_vocab import BibleVocabulary
from datamodules.glue import GlueTask
from datamodules.multitask import MultiTaskDataModule
from datamodules.pseudo_task_datamodule import PseudoTaskDataModule
from datamodules.pseudo_tasks import PseudoTask
from datamodules.schedule import BlockSchedule, IIDSchedule, TaskSampler, task_probabilities
from datamodules.squad_mlqa import MLQATask, SquadTask
from datamodules.synthetic import SyntheticTaskDataModule
from datamodules.task import TaskDataModule
from datamodules.tydiqa import TyDiQATask
from datamodules.vision import (
    AircraftTask,
    CIFAR100Task,
    CUBTask,
    FashionMNISTTask,
    ImageTask,
    StanfordDogsTask,
    SVHNTask,
    TinyImageNetTask,
)
from datamodules.wikiann import WikiANNTask
from datamodules.xnli import MNLITask, XNLITask

__all__ = [
    "AircraftTask",
    "BibleGenreTask",
    "BibleVocabulary",
    "BlockSchedule",
    "CIFAR100Task",
    "CUBTask",
    "FashionMNISTTask",
    "GlueTask",
    "IIDSchedule",
    "ImageTask",
    "MLQATask",
    "MNLITask",
    "MultiTaskDataModule",
    "PseudoTask",
    "PseudoTaskDataModule",
    "SVHNTask",
    "SquadTask",
    "StanfordDogsTask",
    "SyntheticTaskDataModule",
    "TaskDataModule",
    "TaskSampler",
    "TinyImageNetTask",
    "TyDiQATask",
    "WikiANNTask",
    "XNLITask",
    "task_probabilities",
]
