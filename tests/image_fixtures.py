"""Tiny generated images written in each Table 10 dataset's on-disk layout and format (pickles, idx.gz, .mat, jpg
trees with their txt / mat listings), with what was written, so the readers can be checked against it. Every
writer returns the dataset root to give the task and {split: labels written, in reading order}."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 8


def _pixels(rng: np.random.Generator, n: int, channels: int = 3) -> np.ndarray:
    shape = (n, SIZE, SIZE, channels) if channels == 3 else (n, SIZE, SIZE)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _jpg(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(rng, 1)[0]).save(path, format="JPEG")


def write_cifar100(root: Path, classes: int = 3, per_class: int = 4) -> dict[str, list[int]]:
    """<root>/cifar-100-python/{train,test,meta} with N x 3072 data and fine_labels."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", per_class), ("test", 2)):
        labels = [c for c in range(classes) for _ in range(n)]
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        entry = {"data": data, "fine_labels": labels, "coarse_labels": [0] * len(labels)}
        (folder / split).write_bytes(pickle.dumps(entry))
        written[split] = labels
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(classes)]}))
    return written


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(root: Path, classes: int = 3, per_class: int = 4) -> dict[str, list[int]]:
    """<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (28 x 28 there, 8 x 8 here)."""
    rng = np.random.default_rng(1)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", per_class), ("test", "t10k", 2)):
        labels = [c for c in range(classes) for _ in range(n)]
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(_pixels(rng, len(labels), 1), 0x0803)))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.array(labels), 0x0801)))
        written[split] = labels
    return written


def write_svhn(root: Path, per_class: int = 2) -> dict[str, list[int]]:
    """<root>/{train,test}_32x32.mat: X of H x W x 3 x N, y of N x 1 with 10 for the digit 0."""
    import scipy.io

    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", per_class * 3), ("test", 3)):
        digits = [d % 3 for d in range(n)]  # digits 0, 1, 2
        x = np.transpose(_pixels(rng, n), (1, 2, 3, 0))
        y = np.array([[10 if d == 0 else d] for d in digits], dtype=np.uint8)
        scipy.io.savemat(str(root / f"{split}_32x32.mat"), {"X": x, "y": y})
        written[split] = digits
    return written


def write_aircraft(root: Path) -> dict[str, list[int]]:
    """<root>/fgvc-aircraft-2013b/data/{variants.txt, images_variant_<split>.txt, images/<id>.jpg}; variant
    names with spaces and slashes, as the real ones ("Boeing 737-200", "F/A-18")."""
    rng = np.random.default_rng(3)
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "Boeing 737-200", "F/A-18"]
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    written, image_id = {}, 1000000
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        labels, lines = [], []
        for c, variant in enumerate(variants):
            for _ in range(n):
                _jpg(data / "images" / f"{image_id}.jpg", rng)
                lines.append(f"{image_id} {variant}")
                labels.append(c)
                image_id += 1
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
        written[split] = labels
    # trainval = train then val, as in the archive
    trainval = [(data / f"images_variant_{s}.txt").read_text() for s in ("train", "val")]
    (data / "images_variant_trainval.txt").write_text("".join(trainval))
    written["trainval"] = written["train"] + written["val"]
    return written


def write_cub(root: Path, classes: int = 3, per_class: int = 5) -> dict[str, list[int]]:
    """<root>/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/}; the
    first 3 images of each class are train, the rest test."""
    rng = np.random.default_rng(4)
    folder = root / "CUB_200_2011"
    names = [f"{c + 1:03d}.Bird_{c}" for c in range(classes)]
    images, class_labels, split_lines = [], [], []
    written: dict[str, list[int]] = {"train": [], "test": []}
    image_id = 1
    for c, name in enumerate(names):
        for i in range(per_class):
            relative = f"{name}/Bird_{c}_{i:04d}.jpg"
            _jpg(folder / "images" / relative, rng)
            train = i < 3
            images.append(f"{image_id} {relative}")
            class_labels.append(f"{image_id} {c + 1}")
            split_lines.append(f"{image_id} {int(train)}")
            written["train" if train else "test"].append(c)
            image_id += 1
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(class_labels) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(split_lines) + "\n")
    (folder / "classes.txt").write_text("\n".join(f"{c + 1} {n}" for c, n in enumerate(names)) + "\n")
    return written


DOG_BREEDS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog"]


def write_stanford_dogs(root: Path, per_class: int = 4, lists: bool = True) -> dict[str, list[int]]:
    """<root>/Images/<wnid-breed>/*.jpg with {train,test}_list.mat (file_list a cell array, labels 1-based), or
    with `lists=False` the ImageFolder layout <root>/{train,test}/<breed>/*.jpg."""
    import scipy.io

    rng = np.random.default_rng(5)
    written: dict[str, list[int]] = {}
    files: dict[str, list[str]] = {"train": [], "test": []}
    for c, breed in enumerate(DOG_BREEDS):
        for i in range(per_class):
            split = "train" if i < per_class - 1 else "test"
            relative = f"{breed}/{breed.split('-')[0]}_{i}.jpg"
            _jpg((root / "Images" if lists else root / split) / relative, rng)
            files[split].append(relative)
            written.setdefault(split, []).append(c)
    if lists:
        for split, names in files.items():
            cell = np.empty((len(names), 1), dtype=object)
            for i, name in enumerate(names):
                cell[i, 0] = np.array([name])
            labels = np.array([[y + 1] for y in written[split]], dtype=np.uint8)
            scipy.io.savemat(str(root / f"{split}_list.mat"), {"file_list": cell, "labels": labels})
    return written


TIN_WNIDS = ["n09999999", "n01443537", "n02124075", "n01629819"]  # wnids.txt is not sorted


def write_tiny_imagenet(root: Path, per_class: int = 4) -> dict[str, list[str]]:
    """<root>/tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/images, val/val_annotations.txt};
    returns the wnid of each train image and of each val image, in listing order."""
    rng = np.random.default_rng(6)
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(TIN_WNIDS) + "\n")
    train, val, lines = [], [], []
    for wnid in sorted(TIN_WNIDS):
        for i in range(per_class):
            _jpg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", rng)
            train.append(wnid)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    for i, wnid in enumerate(TIN_WNIDS * 2):
        _jpg(folder / "val" / "images" / f"val_{i}.JPEG", rng)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t7\t7")
        val.append(wnid)
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"train": train, "test": val}


def write_all(root: Path) -> dict[str, Path]:
    """Every dataset under `root`, as configs/table10/_data.yaml lays them out: task class name -> its root."""
    roots = {
        "TinyImageNetTask": root / "tiny_imagenet",
        "CIFAR100Task": root / "cifar100",
        "StanfordDogsTask": root / "stanford_dogs",
        "AircraftTask": root / "aircraft",
        "CUBTask": root / "cub",
        "FashionMNISTTask": root / "fashion_mnist",
        "SVHNTask": root / "svhn",
    }
    write_tiny_imagenet(roots["TinyImageNetTask"])
    write_cifar100(roots["CIFAR100Task"])
    write_stanford_dogs(roots["StanfordDogsTask"])
    write_aircraft(roots["AircraftTask"])
    write_cub(roots["CUBTask"])
    write_fashion_mnist(roots["FashionMNISTTask"])
    write_svhn(roots["SVHNTask"])
    return roots
