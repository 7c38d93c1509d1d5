"""One file per update rule; choose one with `model.algorithm.class_path` in YAML."""

from lightning_modules.algorithms.aggregator import Aggregator
from lightning_modules.algorithms.base import Algorithm
from lightning_modules.algorithms.gradnorm import GradNorm
from lightning_modules.algorithms.gradvac import GradVac
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.algorithms.pcgrad import PCGrad
from lightning_modules.algorithms.recadam import RecAdam
from lightning_modules.algorithms.reptile import Reptile
from lightning_modules.algorithms.sequential_reptile import SequentialReptile
from lightning_modules.algorithms.surgery_base import GradientAggregationAlgorithm
from lightning_modules.algorithms.swep import SWEP

__all__ = [
    "MTL",
    "Aggregator",
    "Algorithm",
    "GradNorm",
    "GradVac",
    "GradientAggregationAlgorithm",
    "PCGrad",
    "SWEP",
    "RecAdam",
    "Reptile",
    "SequentialReptile",
]
