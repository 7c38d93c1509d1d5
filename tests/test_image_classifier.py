"""The ResNet-18 of Table 10 against torchvision's checkpoint layout (key names and shapes written out from
torchvision/models/resnet.py), its refusals, and the per-task-head image classifier's contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_modules.models.image_classifier import ImageClassifier
from lightning_modules.models.resnet import WEIGHTS_URL, ResNet18, load_torchvision_weights


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def torchvision_resnet18_keys() -> dict[str, tuple[int, ...]]:
    """torchvision's resnet18 state dict: key -> shape (BasicBlock, layers [2, 2, 2, 2], fc 512 -> 1000)."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    inplanes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            cin = inplanes if block == 0 else planes
            keys[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            keys |= _bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys |= _bn(f"{p}.bn2", planes)
            if block == 0 and layer > 1:
                keys[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1)
                keys |= _bn(f"{p}.downsample.1", planes)
        inplanes = planes
    return keys | {"fc.weight": (1000, 512), "fc.bias": (1000,)}


def fake_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) if s else torch.tensor(7) for k, s in torchvision_resnet18_keys().items()}


def test_key_names_and_shapes_are_torchvisions() -> None:
    own = {k: tuple(v.shape) for k, v in ResNet18().state_dict().items()}
    assert own == torchvision_resnet18_keys()
    assert ResNet18()(torch.zeros(2, 3, 28, 28)).shape == (2, 1000)  # the smallest Table 10 images (F-MNIST)


def test_a_torchvision_checkpoint_round_trips_without_fc(tmp_path: Path) -> None:
    checkpoint = fake_checkpoint()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(checkpoint, path)
    model = ImageClassifier({"a": 3, "b": 5}, pretrained_path=str(path))
    loaded = model.trunk.state_dict()
    assert set(loaded) == {k for k in checkpoint if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], checkpoint[k]) for k in loaded)
    reference = model.pretrained_reference()
    assert set(reference) == {n for n, _ in model.shared_named_parameters()}
    assert torch.equal(reference["trunk.layer4.1.conv2.weight"], checkpoint["layer4.1.conv2.weight"])
    old = {k: v for k, v in checkpoint.items() if not k.endswith("num_batches_tracked")}  # pre-1.0 checkpoints
    load_torchvision_weights(ResNet18(num_classes=None), old, "old")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sd: sd.pop("layer3.0.downsample.0.weight"), r"missing key\(s\) \['layer3.0.downsample.0.weight'\]"),
        (lambda sd: sd.update({"layer5.0.conv1.weight": torch.zeros(1)}), r"unexpected key\(s\) \['layer5.0.conv1"),
        (
            lambda sd: sd.update({"layer2.1.bn2.weight": torch.zeros(64)}),
            r"layer2.1.bn2.weight \(64,\) \(expected \(128,\)",
        ),
    ],
)
def test_a_missing_or_mismatched_key_is_refused_by_name(change, message: str) -> None:
    checkpoint = fake_checkpoint()
    change(checkpoint)
    with pytest.raises(ValueError, match=message):
        load_torchvision_weights(ResNet18(num_classes=None), checkpoint, "file.pth")


def test_no_weights_is_refused_unless_random_init_is_explicit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"pretrained_path.*{WEIGHTS_URL}|{WEIGHTS_URL}.*pretrained_path"):
        ImageClassifier({"a": 3})
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        ImageClassifier({"a": 3}, pretrained_path=str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="contradict"):
        ImageClassifier({"a": 3}, pretrained_path="x.pth", random_init=True)
    ImageClassifier({"a": 3}, random_init=True)


def test_heads_are_per_task_and_not_shared() -> None:
    torch.manual_seed(0)
    model = ImageClassifier({"a": 3, "b": 5}, random_init=True)
    shared = {n for n, _ in model.shared_named_parameters()}
    assert shared and all(n.startswith("trunk.") for n in shared)
    assert model.heads["a"].out_features == 3 and model.heads["b"].out_features == 5
    batch = {"images": torch.randn(4, 3, 16, 16), "labels": torch.tensor([0, 4, 1, 2])}
    out = model("b", batch)
    out.loss.backward()
    assert out.preds.shape == (4,) and model.heads["a"].weight.grad is None
    assert model.trunk.conv1.weight.grad is not None
    assert list(model.eval_metrics("a", num_classes=3)) == ["accuracy"]
    with pytest.raises(ValueError, match="has 7 classes but its head has 3"):
        model.eval_metrics("a", num_classes=7)
    with pytest.raises(ValueError, match=r"\['c'\] have none"):
        model.check_tasks(["a", "c"])


def test_heads_from_the_data_are_sized_by_each_tasks_class_count() -> None:
    model = ImageClassifier(random_init=True)  # num_classes: data
    with pytest.raises(ValueError, match="was given no class counts"):
        model.check_tasks(["a"])
    with pytest.raises(ValueError, match=r"task\(s\) \['b'\] define no class count"):
        model.attach_data(["a", "b"], None, {"a": 3})
    model.attach_data(["a", "b"], None, {"a": 3, "b": 5})
    assert {t: h.out_features for t, h in model.heads.items()} == {"a": 3, "b": 5}
    model.check_tasks(["a", "b"])
    with pytest.raises(
        ValueError, match="the data has 4 classes but its head has 5 outputs; set the task's num_classes: 4"
    ):
        model.eval_metrics("b", num_classes=4)
