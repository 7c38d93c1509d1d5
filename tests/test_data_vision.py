"""The Table 10 dataset readers on tiny generated files in each dataset's own layout: labels and counts as written,
the task protocol (splits, batches, class count), and refusals naming the missing or malformed file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.vision import (
    AircraftTask,
    CIFAR100Task,
    CUBTask,
    FashionMNISTTask,
    StanfordDogsTask,
    SVHNTask,
    TinyImageNetTask,
)
from datamodules.vision.aircraft import read_aircraft
from datamodules.vision.cifar import read_cifar100
from datamodules.vision.cub import read_cub
from datamodules.vision.fashion_mnist import read_fashion_mnist
from datamodules.vision.stanford_dogs import read_stanford_dogs
from datamodules.vision.svhn import read_svhn
from datamodules.vision.tiny_imagenet import read_tiny_imagenet, tiny_imagenet_classes
from datamodules.vision.transforms import ImageTransform
from tests import image_fixtures as fx


@pytest.mark.parametrize(
    ("reader", "writer", "splits", "num_classes"),
    [
        (read_cifar100, fx.write_cifar100, ("train", "test"), 3),
        (read_fashion_mnist, fx.write_fashion_mnist, ("train", "test"), 10),
        (read_svhn, fx.write_svhn, ("train", "test"), 10),
        (read_aircraft, fx.write_aircraft, ("train", "val", "test"), 3),
        (read_cub, fx.write_cub, ("train", "test"), 3),
        (read_stanford_dogs, fx.write_stanford_dogs, ("train", "test"), 3),
    ],
)
def test_labels_and_counts_are_those_written(tmp_path: Path, reader, writer, splits, num_classes) -> None:
    written = writer(tmp_path)
    for split in splits:
        images = reader(tmp_path, split)
        assert images.labels == written[split], split
        assert len(images.class_names) == num_classes
        side = 32 if reader is read_cifar100 else fx.SIZE  # CIFAR's 3072 bytes are always 32 x 32
        assert np.asarray(images.load(0)).shape[:2] == (side, side)


def test_svhn_label_10_is_the_digit_0(tmp_path: Path) -> None:
    import scipy.io

    fx.write_svhn(tmp_path)
    raw = scipy.io.loadmat(str(tmp_path / "train_32x32.mat"))["y"].reshape(-1)
    labels = read_svhn(tmp_path, "train").labels
    assert 10 in raw and 0 in labels and [0 if y == 10 else int(y) for y in raw] == labels


def test_cifar_pixels_are_channel_major_rows(tmp_path: Path) -> None:
    import pickle

    fx.write_cifar100(tmp_path)
    raw = pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes())["data"][0]
    image = np.asarray(read_cifar100(tmp_path, "train").load(0))
    assert image.shape == (32, 32, 3) and image[0, 1, 2] == raw[2 * 1024 + 1]


def test_stanford_dogs_folder_layout(tmp_path: Path) -> None:
    written = fx.write_stanford_dogs(tmp_path, lists=False)
    for split in ("train", "test"):
        images = read_stanford_dogs(tmp_path, split)
        assert images.labels == written[split] and images.class_names == fx.DOG_BREEDS


def test_tiny_imagenet_parts_are_halves_of_the_sorted_wnids(tmp_path: Path) -> None:
    written = fx.write_tiny_imagenet(tmp_path)
    wnids = sorted(fx.TIN_WNIDS)
    assert tiny_imagenet_classes(tmp_path, 1, 2) == wnids[:2] and tiny_imagenet_classes(tmp_path, 2, 2) == wnids[2:]
    for part in (1, 2):
        classes = wnids[2 * (part - 1) : 2 * part]
        for split in ("train", "test"):
            images = read_tiny_imagenet(tmp_path, split, classes)
            expected = sorted(classes.index(w) for w in written[split] if w in classes)
            assert sorted(images.labels) == expected and len(expected) > 0
            assert all(Path(p).is_file() for p in images.images)


@pytest.mark.parametrize(
    ("writer", "missing", "read"),
    [
        (fx.write_cifar100, "cifar-100-python/meta", lambda r: read_cifar100(r, "train")),
        (fx.write_fashion_mnist, "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz", lambda r: read_fashion_mnist(r, "test")),
        (fx.write_svhn, "test_32x32.mat", lambda r: read_svhn(r, "test")),
        (fx.write_aircraft, "fgvc-aircraft-2013b/data/variants.txt", lambda r: read_aircraft(r, "train")),
        (fx.write_cub, "CUB_200_2011/train_test_split.txt", lambda r: read_cub(r, "train")),
        (fx.write_stanford_dogs, "train_list.mat", lambda r: read_stanford_dogs(r, "train")),
        (fx.write_tiny_imagenet, "tiny-imagenet-200/wnids.txt", lambda r: tiny_imagenet_classes(r, 1, 2)),
        (
            fx.write_tiny_imagenet,
            "tiny-imagenet-200/val/val_annotations.txt",
            lambda r: read_tiny_imagenet(r, "test", ["n01443537"]),
        ),
    ],
)
def test_a_missing_file_is_named(tmp_path: Path, writer, missing: str, read) -> None:
    writer(tmp_path)
    (tmp_path / missing).unlink()
    name = Path(missing).name.removesuffix(".gz")
    with pytest.raises((FileNotFoundError, ValueError), match=name.replace(".", r"\.")):
        read(tmp_path)


def test_malformed_files_are_refused_by_name(tmp_path: Path) -> None:
    fx.write_fashion_mnist(tmp_path)
    labels = tmp_path / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))  # an image magic in the labels file
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz has magic"):
        read_fashion_mnist(tmp_path, "train")
    labels.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz is not a readable gzip"):
        read_fashion_mnist(tmp_path, "train")
    fx.write_aircraft(tmp_path / "air")
    listing = tmp_path / "air" / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt"
    listing.write_text("1000000 Concorde\n")
    with pytest.raises(ValueError, match="images_variant_test.txt names variant 'Concorde'"):
        read_aircraft(tmp_path / "air", "test")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="test_32x32.mat"):
        read_svhn(tmp_path / "bad", "test")


def test_a_task_holds_out_validation_and_batches_rgb_images(tmp_path: Path) -> None:
    fx.write_fashion_mnist(tmp_path)
    task = FashionMNISTTask(root=str(tmp_path), image_size=16, batch_size=4, val_fraction=0.25, split_seed=3)
    task.setup("fit")
    assert (len(task.train_dataset), len(task.val_dataset), len(task.test_dataset)) == (9, 3, 6)
    assert not set(task.train_dataset.indices) & set(task.val_dataset.indices)
    again = FashionMNISTTask(root=str(tmp_path), image_size=16, val_fraction=0.25, split_seed=3)
    again.setup("fit")
    assert again.val_dataset.indices == task.val_dataset.indices  # seeded: every method validates on the same
    batch = task.collate([task.train_dataset[i] for i in range(4)])
    assert batch["images"].shape == (4, 3, 16, 16) and batch["labels"].dtype == torch.long
    assert task.metric_options() == {"num_classes": 10} and task.name == "f-mnist"
    val = next(iter(task.val_dataloader()))
    assert torch.equal(val["images"][:, 0], val["images"][:, 2])  # grayscale replicated to RGB


@pytest.mark.parametrize(
    ("task_class", "writer", "kwargs", "sizes", "classes"),
    [
        (CIFAR100Task, fx.write_cifar100, {}, (11, 1, 6), 3),
        (SVHNTask, fx.write_svhn, {}, (5, 1, 3), 10),
        (AircraftTask, fx.write_aircraft, {}, (9, 3, 6), 3),  # its own validation split
        (AircraftTask, fx.write_aircraft, {"train_split": "trainval"}, (11, 1, 6), 3),
        (CUBTask, fx.write_cub, {}, (8, 1, 6), 3),
        (StanfordDogsTask, fx.write_stanford_dogs, {}, (8, 1, 3), 3),
        (TinyImageNetTask, fx.write_tiny_imagenet, {"part": 2}, (7, 1, 4), 2),
    ],
)
def test_every_task_sets_up_its_splits(tmp_path: Path, task_class, writer, kwargs, sizes, classes) -> None:
    writer(tmp_path)
    task = task_class(root=str(tmp_path), image_size=12, batch_size=2, **kwargs)
    task.setup("fit")
    assert (len(task.train_dataset), len(task.val_dataset), len(task.test_dataset)) == sizes
    assert task.num_classes == classes
    image, label = task.test_dataset[0]
    assert image.shape == (3, 12, 12) and 0 <= label < classes


def test_training_augmentation_crops_and_flips_in_place() -> None:
    from PIL import Image

    image = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    plain = ImageTransform(32)(image)
    torch.manual_seed(0)
    augmented = [ImageTransform(32, train=True)(image) for _ in range(8)]
    assert all(a.shape == plain.shape for a in augmented) and any(not torch.equal(a, plain) for a in augmented)
    assert ImageTransform(32, train=True).padding == 4 and ImageTransform(84, train=True).padding == 8
