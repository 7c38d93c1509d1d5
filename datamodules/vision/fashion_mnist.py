"""Fashion-MNIST from its idx files, as distributed and as torchvision's FashionMNIST keeps them in
<root>/FashionMNIST/raw/: {train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte, each optionally
gzipped (.gz). The idx header is a big-endian magic (0x0803 images, 0x0801 labels) and one int32 per dimension."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.vision.images import LabelledImages
from datamodules.vision.task import ImageTask

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FIX = (
    "download the four idx files from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into "
    "<root>/FashionMNIST/raw/ (gzipped or not)"
)
PREFIX = {"train": "train", "test": "t10k"}


def _find(root: Path, name: str) -> Path:
    """<root>/FashionMNIST/raw/<name>[.gz], or the same directly under <root>."""
    for folder in (root / "FashionMNIST" / "raw", root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"Fashion-MNIST: {root / 'FashionMNIST' / 'raw' / name}[.gz] does not exist; {FIX}")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file of unsigned bytes with the expected magic number (0x0803: 3-d images, 0x0801: labels)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise ValueError(f"Fashion-MNIST: {path} is not a readable gzip file ({err}); {FIX}") from err
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        raise ValueError(f"Fashion-MNIST: {path} has magic {found}, expected {magic:#06x}; {FIX}")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"Fashion-MNIST: {path} declares shape {shape} but holds {body.size} bytes; {FIX}")
    return body.reshape(shape)


def read_fashion_mnist(root: Path, split: str) -> LabelledImages:
    """The "train" or "test" split: 28 x 28 grayscale images, labels 0-9."""
    images_path = _find(Path(root), f"{PREFIX[split]}-images-idx3-ubyte")
    labels_path = _find(Path(root), f"{PREFIX[split]}-labels-idx1-ubyte")
    images, labels = read_idx(images_path, 0x0803), read_idx(labels_path, 0x0801)
    return LabelledImages(images, [int(y) for y in labels], list(CLASSES), str(images_path))


class FashionMNISTTask(ImageTask):
    """Fashion-MNIST (10 classes, 28 x 28 grayscale, replicated to RGB); validation: a hold-out of train."""

    default_image_size = 28  # Shin et al. 2021
    default_num_classes = 10

    def __init__(self, root: str, name: str = "f-mnist", **kwargs: Any) -> None:
        super().__init__(name=name, root=root, **kwargs)

    def read(self, split: str) -> LabelledImages:
        return read_fashion_mnist(self.root, split)
