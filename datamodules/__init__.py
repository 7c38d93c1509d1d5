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
from datamodules.wikiann import WikiANNTask
from datamodules.xnli import MNLITask, XNLITask

__all__ = [
    "BibleGenreTask",
    "BibleVocabulary",
    "BlockSchedule",
    "GlueTask",
    "IIDSchedule",
    "MLQATask",
    "MNLITask",
    "MultiTaskDataModule",
    "PseudoTask",
    "PseudoTaskDataModule",
    "SquadTask",
    "SyntheticTaskDataModule",
    "TaskDataModule",
    "TaskSampler",
    "TyDiQATask",
    "WikiANNTask",
    "XNLITask",
    "task_probabilities",
]
