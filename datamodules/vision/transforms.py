"""Image preprocessing in plain torch and PIL (torchvision cannot be installed beside this torch build).

Follows the reference code of Shin et al. (2021, github.com/JWoong148/ContinualTrajectoryShifting, `dataloader.py`):
Resize((s, s)), then for training RandomCrop(s, padding=4 if s == 32 else 8) and RandomHorizontalFlip, ToTensor,
Normalize(mean, std) with mean = std = 0.5 per channel. The random draws use torch's global generator, which the
training stream seeds per batch (datamodules/streams.py): augmentation is reproducible, the same with or without
loader workers, and resumes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> normalised float tensor [3, size, size]; `train` adds the padded random crop and the flip."""

    size: int
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    train: bool = False

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need 3 values each (RGB), std > 0; got {self.mean}, {self.std}")

    @property
    def padding(self) -> int:
        return 4 if self.size == 32 else 8

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")  # grayscale (Fashion-MNIST) is replicated to 3 channels
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        if self.train:
            x = self._random_crop(x)
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(3, 1, 1)
        return (x - mean) / std

    def _random_crop(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's RandomCrop with zero padding: pad every side, then crop `size` at a uniform offset."""
        p = self.padding
        padded = F.pad(x, (p, p, p, p))
        top, left = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
        return padded[:, top : top + self.size, left : left + self.size]
