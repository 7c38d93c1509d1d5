"""Stanford Dogs (Khosla et al. 2011), as distributed (images.tar and lists.tar): <root>/Images/<wnid-breed>/*.jpg
with <root>/train_list.mat and <root>/test_list.mat ("file_list": paths relative to Images/, "labels": 1-based
class ids in the sorted order of the breed folders). An ImageFolder-style copy (<root>/train/<breed>/*.jpg and
<root>/test/<breed>/*.jpg, classes in sorted folder order) is read when the .mat lists are absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datamodules.vision.images import LabelledImages, load_mat
from datamodules.vision.task import ImageTask

FIX = (
    "download images.tar and lists.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/ and extract both "
    "into the task's root (or lay the images out as <root>/{train,test}/<breed>/*.jpg)"
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _strings(cell: Any) -> list[str]:
    """The strings of a MATLAB cell array as scipy.io.loadmat returns it (nested object arrays)."""
    if isinstance(cell, str):
        return [cell]
    if isinstance(cell, np.ndarray) and cell.dtype.kind == "U":
        return [str(s) for s in cell.reshape(-1)]
    return [s for item in np.asarray(cell, dtype=object).reshape(-1) for s in _strings(item)]


def _read_lists(root: Path, split: str) -> LabelledImages:
    path = root / f"{split}_list.mat"
    mat = load_mat(path, "Stanford Dogs", FIX)
    if "file_list" not in mat or "labels" not in mat:
        raise ValueError(f"Stanford Dogs: {path} lacks file_list or labels; {FIX}")
    files = _strings(mat["file_list"])
    labels = [int(y) - 1 for y in np.asarray(mat["labels"]).reshape(-1)]
    images = root / "Images"
    if not images.is_dir():
        raise FileNotFoundError(f"Stanford Dogs: {images} does not exist; {FIX}")
    classes = sorted(d.name for d in images.iterdir() if d.is_dir())
    return LabelledImages([images / f for f in files], labels, classes, str(path))


def _read_folders(root: Path, split: str) -> LabelledImages:
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"Stanford Dogs: neither {root / f'{split}_list.mat'} nor {folder} exists; {FIX}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    return LabelledImages(paths, labels, classes, str(folder))


def read_stanford_dogs(root: Path, split: str) -> LabelledImages:
    """The "train" or "test" split: the .mat lists when present, else the ImageFolder layout."""
    if split not in ("train", "test"):
        raise ValueError(f"Stanford Dogs has splits train and test, not {split!r}")
    root = Path(root)
    return _read_lists(root, split) if (root / f"{split}_list.mat").is_file() else _read_folders(root, split)


class StanfordDogsTask(ImageTask):
    """Stanford Dogs (120 breeds); validation: a hold-out of train; test: the official test list."""

    default_image_size = 84  # Shin et al. 2021
    default_num_classes = 120

    def __init__(self, root: str, name: str = "dogs", **kwargs: Any) -> None:
        super().__init__(name=name, root=root, **kwargs)

    def read(self, split: str) -> LabelledImages:
        return read_stanford_dogs(self.root, split)
