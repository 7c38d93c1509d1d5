"""What a dataset reader returns (images with labels and class names) and the torch dataset over part of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass
class LabelledImages:
    """One split as read from disk: `images` is either a uint8 array [N, H, W] / [N, H, W, 3] held in memory, or a
    list of image file paths read when indexed; `labels` are 0-based class ids into `class_names`."""

    images: np.ndarray | list[Path]
    labels: list[int]
    class_names: list[str]
    source: str  # the file or directory it came from, for error messages

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")
        bad = [y for y in self.labels if not 0 <= y < len(self.class_names)]
        if bad:
            raise ValueError(
                f"{self.source}: labels {sorted(set(bad))[:5]} are outside the {len(self.class_names)} classes"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Image.Image:
        item = self.images[index]
        if isinstance(item, np.ndarray):
            return Image.fromarray(item)
        try:
            with Image.open(item) as image:
                image.load()
                return image
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read image {item} ({err}); re-extract the dataset from its archive") from err


class ImageDataset(torch.utils.data.Dataset):
    """`LabelledImages` restricted to `indices`, each item (transformed image, label)."""

    def __init__(
        self, source: LabelledImages, indices: Sequence[int], transform: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.source = source
        self.indices = list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        index = self.indices[i]
        return self.transform(self.source.load(index)), self.source.labels[index]


def holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a seeded random `fraction` of range(n) held out (at least one example)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            f"val_fraction must be in (0, 1) for a dataset without its own validation split, got {fraction}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise ValueError(f"val_fraction={fraction} of {n} training images leaves none to train on")
    return sorted(order[n_val:]), sorted(order[:n_val])


def require_file(path: Path, what: str, fix: str) -> Path:
    """`path` if it is a file, else an error naming it and how to get it."""
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist; {fix}")
    return path


def read_lines(path: Path, what: str, fix: str) -> list[str]:
    """The non-empty lines of a text file, refused by name when missing."""
    return [line.strip() for line in require_file(path, what, fix).read_text().splitlines() if line.strip()]


def load_mat(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A MATLAB .mat file (scipy.io.loadmat), refused by name when missing or unreadable."""
    import scipy.io

    require_file(path, what, fix)
    try:
        return scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several types for a damaged file
        raise ValueError(f"{what}: cannot read {path} as a .mat file ({err}); {fix}") from err
