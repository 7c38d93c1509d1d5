"""CUB-200-2011 (Wah et al. 2011), as distributed (CUB_200_2011.tgz): <root>/CUB_200_2011/images.txt
("<image id> <relative path>"), image_class_labels.txt ("<image id> <class id, 1-based>"), train_test_split.txt
("<image id> <1 train | 0 test>"), classes.txt ("<class id> <name>") and images/<relative path>."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules.vision.images import LabelledImages, read_lines
from datamodules.vision.task import ImageTask

FIX = "download CUB_200_2011.tgz (https://data.caltech.edu/records/65de6-vp158) and extract it into the task's root"


def _table(path: Path) -> dict[str, str]:
    """A two-column listing: first field -> the rest of the line."""
    rows = {}
    for line in read_lines(path, "CUB-200-2011", FIX):
        key, _, value = line.partition(" ")
        if not value:
            raise ValueError(f"CUB-200-2011: malformed line {line!r} in {path}; {FIX}")
        rows[key] = value.strip()
    return rows


def read_cub(root: Path, split: str) -> LabelledImages:
    """The "train" or "test" split of train_test_split.txt, labels 0-199 (class id - 1)."""
    if split not in ("train", "test"):
        raise ValueError(f"CUB-200-2011 has splits train and test, not {split!r}")
    folder = Path(root) / "CUB_200_2011"
    classes = _table(folder / "classes.txt")
    class_names = [classes[k] for k in sorted(classes, key=int)]
    images, labels_of, is_train = (
        _table(folder / name) for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt")
    )
    wanted = "1" if split == "train" else "0"
    paths, labels = [], []
    for image_id in sorted(images, key=int):
        if image_id not in labels_of or image_id not in is_train:
            raise ValueError(
                f"CUB-200-2011: image {image_id} of images.txt has no label or split under {folder}; {FIX}"
            )
        if is_train[image_id] == wanted:
            paths.append(folder / "images" / images[image_id])
            labels.append(int(labels_of[image_id]) - 1)
    return LabelledImages(paths, labels, class_names, str(folder / "train_test_split.txt"))


class CUBTask(ImageTask):
    """CUB-200-2011 (200 bird species); validation: a hold-out of train; test: the official test images."""

    default_image_size = 84  # Shin et al. 2021
    default_num_classes = 200

    def __init__(self, root: str, name: str = "cub", **kwargs: Any) -> None:
        super().__init__(name=name, root=root, **kwargs)

    def read(self, split: str) -> LabelledImages:
        return read_cub(self.root, split)
