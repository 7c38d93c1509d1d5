"""FGVC-Aircraft (Maji et al. 2013) at the variant level (100 classes), as distributed (fgvc-aircraft-2013b.tar.gz)
and as torchvision's FGVCAircraft reads it: <root>/fgvc-aircraft-2013b/data/variants.txt (the class names, in
label order), images_variant_{train,val,trainval,test}.txt (lines "<image id> <variant name>", the name may hold
spaces) and images/<image id>.jpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules.vision.images import LabelledImages, read_lines
from datamodules.vision.task import ImageTask

FIX = (
    "download https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz and "
    "extract it into the task's root"
)
SPLITS = ("train", "val", "trainval", "test")


def read_aircraft(root: Path, split: str) -> LabelledImages:
    """One of train, val, trainval, test: image paths and variant ids (0-99, the order of variants.txt)."""
    if split not in SPLITS:
        raise ValueError(f"FGVC-Aircraft has no split {split!r}; known: {', '.join(SPLITS)}")
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    classes = read_lines(data / "variants.txt", "FGVC-Aircraft", FIX)
    index = {name: i for i, name in enumerate(classes)}
    listing = data / f"images_variant_{split}.txt"
    paths, labels = [], []
    for line in read_lines(listing, "FGVC-Aircraft", FIX):
        image_id, _, variant = line.partition(" ")
        if variant not in index:
            raise ValueError(f"FGVC-Aircraft: {listing} names variant {variant!r}, which is not in variants.txt; {FIX}")
        paths.append(data / "images" / f"{image_id}.jpg")
        labels.append(index[variant])
    return LabelledImages(paths, labels, classes, str(listing))


class AircraftTask(ImageTask):
    """FGVC-Aircraft variants; its own validation split (`train_split: train`), or train+val for training with a
    hold-out of it for validation (`train_split: trainval`)."""

    default_image_size = 84  # Shin et al. 2021
    default_num_classes = 100

    def __init__(self, root: str, name: str = "aircraft", train_split: str = "train", **kwargs: Any) -> None:
        if train_split not in ("train", "trainval"):
            raise ValueError(f"train_split must be 'train' or 'trainval', got {train_split!r}")
        self.train_split = train_split
        self.has_val_split = train_split == "train"
        super().__init__(name=name, root=root, **kwargs)

    def read(self, split: str) -> LabelledImages:
        return read_aircraft(self.root, self.train_split if split == "train" else split)
