"""Tiny-ImageNet-200 (Le & Yang 2015), as distributed (tiny-imagenet-200.zip): <root>/tiny-imagenet-200/wnids.txt,
train/<wnid>/images/*.JPEG, val/images/*.JPEG with val/val_annotations.txt (tab-separated: file, wnid, box).
The test images have no public labels, so the labelled validation images serve as the test split (as in Shin et
al. 2021) and validation is a hold-out of train.

The paper's TIN-1 and TIN-2 (Appendix E) split the 200 classes in two: `part` 1 is the first 100 wnids in sorted
order, `part` 2 the second 100, each relabelled 0-99."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules.vision.images import LabelledImages, read_lines
from datamodules.vision.task import ImageTask

FIX = "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and extract it into the task's root"


def tiny_imagenet_classes(root: Path, part: int, parts: int) -> list[str]:
    """The wnids of part `part` (1-based) of `parts` equal contiguous chunks of the sorted wnids.txt."""
    wnids = sorted(read_lines(Path(root) / "tiny-imagenet-200" / "wnids.txt", "Tiny-ImageNet", FIX))
    if not 1 <= part <= parts or len(wnids) % parts:
        raise ValueError(f"Tiny-ImageNet: cannot take part {part} of {parts} of {len(wnids)} classes")
    size = len(wnids) // parts
    return wnids[(part - 1) * size : part * size]


def read_tiny_imagenet(root: Path, split: str, classes: list[str]) -> LabelledImages:
    """ "train" (train/<wnid>/images) or "test" (the labelled val/ images) of the given wnids, labels their index."""
    folder = Path(root) / "tiny-imagenet-200"
    index = {wnid: i for i, wnid in enumerate(classes)}
    paths, labels = [], []
    if split == "train":
        for wnid in classes:
            images = folder / "train" / wnid / "images"
            if not images.is_dir():
                raise FileNotFoundError(f"Tiny-ImageNet: {images} does not exist; {FIX}")
            files = sorted(p for p in images.iterdir() if p.suffix.upper() == ".JPEG")
            paths += files
            labels += [index[wnid]] * len(files)
        source = folder / "train"
    elif split == "test":
        source = folder / "val" / "val_annotations.txt"
        for line in read_lines(source, "Tiny-ImageNet", FIX):
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(f"Tiny-ImageNet: malformed line {line!r} in {source}; {FIX}")
            if fields[1] in index:
                paths.append(folder / "val" / "images" / fields[0])
                labels.append(index[fields[1]])
    else:
        raise ValueError(f"Tiny-ImageNet is read as splits train and test (its val/), not {split!r}")
    return LabelledImages(paths, labels, list(classes), str(source))


class TinyImageNetTask(ImageTask):
    """A class-wise part of Tiny-ImageNet-200 (paper: TIN-1 = part 1, TIN-2 = part 2 of 2)."""

    default_image_size = 64  # Shin et al. 2021

    def __init__(self, root: str, part: int, name: str | None = None, parts: int = 2, **kwargs: Any) -> None:
        if not 1 <= part <= parts:
            raise ValueError(f"part must be in 1..{parts}, got {part}")
        self.part, self.parts = part, parts
        self.default_num_classes = 200 // parts  # each part: an equal share of the 200 classes
        super().__init__(name=name or f"tin-{part}", root=root, **kwargs)

    def read(self, split: str) -> LabelledImages:
        return read_tiny_imagenet(self.root, split, tiny_imagenet_classes(self.root, self.part, self.parts))
