"""Image classification tasks of the paper's Table 10 (Appendix E), read from the files as distributed."""

from datamodules.vision.aircraft import AircraftTask
from datamodules.vision.cifar import CIFAR100Task
from datamodules.vision.cub import CUBTask
from datamodules.vision.fashion_mnist import FashionMNISTTask
from datamodules.vision.stanford_dogs import StanfordDogsTask
from datamodules.vision.svhn import SVHNTask
from datamodules.vision.task import ImageTask
from datamodules.vision.tiny_imagenet import TinyImageNetTask

__all__ = [
    "AircraftTask",
    "CIFAR100Task",
    "CUBTask",
    "FashionMNISTTask",
    "ImageTask",
    "SVHNTask",
    "StanfordDogsTask",
    "TinyImageNetTask",
]
