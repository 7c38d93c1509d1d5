"""CIFAR-100 from its python pickles, as distributed (cifar-100-python.tar.gz) and as torchvision's CIFAR100 reads
them: <root>/cifar-100-python/{train,test,meta}; each split a dict with "data" (N x 3072 uint8, channel-major
32 x 32) and "fine_labels"; meta's "fine_label_names" names the 100 classes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.vision.images import LabelledImages, require_file
from datamodules.vision.task import ImageTask

FIX = "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it into the task's root"


def _unpickle(path: Path) -> dict[str, Any]:
    require_file(path, "CIFAR-100", FIX)
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"CIFAR-100: {path} is not a readable pickle ({err}); {FIX}") from err


def read_cifar100(root: Path, split: str) -> LabelledImages:
    """The "train" or "test" split of <root>/cifar-100-python as HWC uint8 images with fine labels (0-99)."""
    folder = Path(root) / "cifar-100-python"
    names = _unpickle(folder / "meta").get("fine_label_names")
    entry = _unpickle(folder / split)
    if names is None or "data" not in entry or "fine_labels" not in entry:
        raise ValueError(f"CIFAR-100: {folder / split} or its meta lacks data / fine_labels / fine_label_names; {FIX}")
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return LabelledImages(
        np.ascontiguousarray(data), [int(y) for y in entry["fine_labels"]], list(names), str(folder / split)
    )


class CIFAR100Task(ImageTask):
    """CIFAR-100 (100 classes, 32 x 32); validation: a hold-out of train; test: the test pickle."""

    default_image_size = 32  # Shin et al. 2021
    default_num_classes = 100

    def __init__(self, root: str, name: str = "cifar100", **kwargs: Any) -> None:
        super().__init__(name=name, root=root, **kwargs)

    def read(self, split: str) -> LabelledImages:
        return read_cifar100(self.root, split)
