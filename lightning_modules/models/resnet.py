"""ResNet-18 (He et al. 2016) in plain torch, with exactly the module names and parameter shapes of torchvision's
`torchvision.models.resnet18` (conv1, bn1, layer1.0.conv1, ..., layer4.1.bn2, fc), so that torchvision's published
ImageNet checkpoint loads with a strict key check (torchvision cannot be installed beside this torch build).

Weights: torchvision's IMAGENET1K_V1 file, https://download.pytorch.org/models/resnet18-f37072fd.pth.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
WEIGHTS_FILE = "resnet18-f37072fd.pth"


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions with batch norm and an identity (or 1x1 conv) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout and initialisation (Kaiming normal convolutions, BN weight 1 and bias 0).

    `num_classes=None` replaces `fc` by an identity: the 512-d pooled features, no `fc.*` parameters."""

    def __init__(self, num_classes: int | None = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._layer(64, 64, 1)
        self.layer2 = self._layer(64, 128, 2)
        self.layer3 = self._layer(128, 256, 2)
        self.layer4 = self._layer(256, 512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Module = nn.Linear(512, num_classes) if num_classes is not None else nn.Identity()
        self.out_features = 512 if num_classes is None else num_classes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def _layer(inplanes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_torchvision_weights(model: ResNet18, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Loads a torchvision resnet18 state dict into `model`, leaving out `fc.*` when `model` has no fc. Every other
    key must be there with its shape (`num_batches_tracked` may be absent, as in older checkpoints); a missing,
    unexpected or mis-shaped key is refused by name."""
    own = model.state_dict()
    given = {k: v for k, v in state_dict.items() if k in own or not k.startswith("fc.")}
    missing = [k for k in own if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in own]
    wrong = [f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
             if k in given and given[k].shape != v.shape]  # fmt: skip
    problems = [f"missing key(s) {missing[:5]}"] * bool(missing) + [f"unexpected key(s) {unexpected[:5]}"] * bool(
        unexpected
    )
    problems += [f"shape mismatch: {', '.join(wrong[:5])}"] * bool(wrong)
    if problems:
        raise ValueError(
            f"{source} is not a torchvision resnet18 state dict: {'; '.join(problems)} "
            f"(expected torchvision's {WEIGHTS_FILE}, {WEIGHTS_URL})"
        )
    model.load_state_dict(given, strict=True)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint file of tensors (a plain state dict, or one under "state_dict"), refused by name if absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} do not exist; download {WEIGHTS_URL} and give its path as pretrained_path"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def torchvision_imagenet_weights() -> dict[str, torch.Tensor] | None:
    """torchvision's IMAGENET1K_V1 resnet18 weights when torchvision imports (it downloads them on first use into
    torch's hub cache); None when it does not. Not exercised here: torchvision cannot be installed beside this torch."""
    try:
        from torchvision.models import ResNet18_Weights, resnet18  # type: ignore[import-not-found]
    except Exception:  # ImportError, or torchvision built for another torch ("operator torchvision::nms ...")
        return None
    return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1).state_dict()
