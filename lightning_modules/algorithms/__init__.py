from lightning_modules.algorithms.base import Algorithm
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.algorithms.reptile import Reptile
from lightning_modules.algorithms.sequential_reptile import SequentialReptile

__all__ = ["MTL", "Algorithm", "Reptile", "SequentialReptile"]
