from lightning_modules.models.base import TaskModel, TaskOutput
from lightning_modules.models.synthetic import SyntheticLandscape

__all__ = ["SyntheticLandscape", "TaskModel", "TaskOutput"]
