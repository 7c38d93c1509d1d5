"""SVHN (cropped digits) from its MATLAB files, as distributed and as torchvision's SVHN reads them:
<root>/train_32x32.mat and <root>/test_32x32.mat, "X" of shape 32 x 32 x 3 x N (uint8) and "y" of N x 1 with
label 10 for the digit 0 (torchvision maps 10 -> 0, and so does this reader)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datamodules.vision.images import LabelledImages, load_mat
from datamodules.vision.task import ImageTask

FIX = "download http://ufldl.stanford.edu/housenumbers/{name} into the task's root"


def read_svhn(root: Path, split: str) -> LabelledImages:
    """The "train" or "test" split: 32 x 32 RGB, labels 0-9 (the digit)."""
    name = f"{split}_32x32.mat"
    path = Path(root) / name
    mat = load_mat(path, "SVHN", FIX.format(name=name))
    if "X" not in mat or "y" not in mat or mat["X"].ndim != 4:
        raise ValueError(f"SVHN: {path} lacks X (32x32x3xN) or y; {FIX.format(name=name)}")
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)).astype(np.uint8))
    labels = mat["y"].astype(np.int64).reshape(-1)
    labels[labels == 10] = 0
    return LabelledImages(images, [int(y) for y in labels], [str(d) for d in range(10)], str(path))


class SVHNTask(ImageTask):
    """SVHN (10 classes, 32 x 32); validation: a hold-out of train; test: test_32x32.mat (extra is not used)."""

    default_image_size = 32  # Shin et al. 2021
    default_num_classes = 10

    def __init__(self, root: str, name: str = "svhn", **kwargs: Any) -> None:
        super().__init__(name=name, root=root, **kwargs)

    def read(self, split: str) -> LabelledImages:
        return read_svhn(self.root, split)
