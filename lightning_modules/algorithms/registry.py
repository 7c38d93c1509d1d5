"""The methods of an experiment, read from its configs on disk, so that a new method is its algorithm file, its test
and its configs: the scripts, reports and tests that list methods ask here instead of keeping their own lists.

A method is a config `configs/<experiment>/<key>.yaml` (files starting with `_` are shared pieces); its algorithm is
the config's `model.algorithm.class_path` and its label that class's `label` (the torchjd adapter's label names its
aggregator, `"{aggregator}"` -> "CAGrad"). MTL on a one-task data config is STL, as the configs say.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from lightning_modules.algorithms.base import Algorithm
from lightning_modules.algorithms.mtl import MTL

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The paper's row order (Lee et al., ICLR 2022, Tables 1-5); methods it does not have come after, by config name.
PAPER_ORDER = ("STL", "MTL", "RecAdam", "GradNorm", "PCGrad", "GradVac", "SWEP", "Reptile", "Seq. Reptile")
SINGLE_TASK = "STL"


@dataclass(frozen=True)
class Method:
    """One config of an experiment: `key` is its file name, also its log directory (logs/<experiment>/<key>)."""

    key: str
    experiment: str
    config: Path
    algorithm: type[Algorithm]
    label: str

    @property
    def rank(self) -> tuple[int, str]:
        return order(self.label, self.key)


def order(label: str, key: str) -> tuple[int, str]:
    """The sort key of a method: its place in the paper's rows, then its config name."""
    return (PAPER_ORDER.index(label) if label in PAPER_ORDER else len(PAPER_ORDER), key)


def _root(root: Path | None) -> Path:
    """`root`, else the repository's configs/ (looked up at call time, so tests can point it elsewhere)."""
    return Path(root) if root is not None else CONFIGS


def experiments(root: Path | None = None) -> list[str]:
    """The experiments: the folders of `root` that hold at least one method config."""
    folder = _root(root)
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and any(d.glob("[!_]*.yaml")))


def methods(experiment: str, root: Path | None = None) -> list[Method]:
    """Every method config of `configs/<experiment>/`, in the canonical order."""
    folder = _root(root) / experiment
    if not folder.is_dir():
        raise FileNotFoundError(f"no experiment {experiment!r}: {folder} is not a directory")
    return sorted((read_method(path) for path in folder.glob("[!_]*.yaml")), key=lambda m: m.rank)


def keys(experiment: str, root: Path | None = None) -> list[str]:
    return [m.key for m in methods(experiment, root)]


def labels(root: Path | None = None) -> dict[str, str]:
    """Config name -> label over every experiment (the name of a log directory -> what tables show)."""
    return dict(_labels(_root(root).resolve()))


def plain_keys(root: Path | None = None) -> dict[str, str]:
    """Label -> the plain config name of that method (the shortest: configs/mlqa prefixes its names with their
    source, squad_mtl), in the canonical order."""
    by_label: dict[str, list[str]] = {}
    for key, label in labels(root).items():
        by_label.setdefault(label, []).append(key)
    plain = {label: min(names, key=lambda k: (len(k), k)) for label, names in by_label.items()}
    return dict(sorted(plain.items(), key=lambda item: order(*item)))


@cache
def _labels(root: Path) -> tuple[tuple[str, str], ...]:
    return tuple((m.key, m.label) for e in experiments(root) for m in methods(e, root))


def read_method(path: Path) -> Method:
    """The method of one config file; its algorithm class is imported."""
    config = _load(path.read_text(), path) or {}
    model = _resolve(config.get("model"), path) or {}
    algorithm = _resolve(model.get("algorithm"), path) or {}
    class_path = algorithm.get("class_path") if isinstance(algorithm, dict) else None
    if not class_path:
        raise ValueError(f"{path}: no model.algorithm.class_path")
    cls = _import(class_path, path)
    args = algorithm.get("init_args") or {}
    label = (vars(cls).get("label") or cls.__name__).format(**_class_names(args))
    if cls is MTL and _task_count(config, path) == 1:
        label = SINGLE_TASK
    return Method(path.stem, path.parent.name, path, cls, label)


def _import(class_path: str, path: Path) -> type[Algorithm]:
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{path}: cannot import the algorithm {class_path}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise ValueError(f"{path}: {class_path} is not a lightning_modules.algorithms.Algorithm")
    return cls


def _class_names(args: dict[str, Any]) -> dict[str, str]:
    """init arg -> the class name of the object it builds ({"aggregator": "CAGrad"})."""
    return {
        name: str(value["class_path"]).rsplit(".", 1)[-1]
        for name, value in args.items()
        if isinstance(value, dict) and "class_path" in value
    }


def _task_count(config: dict[str, Any], path: Path) -> int | None:
    data = _resolve(config.get("data"), path)
    tasks = data.get("tasks") if isinstance(data, dict) else None
    return len(tasks) if isinstance(tasks, list) else None


def _resolve(value: Any, path: Path) -> Any:
    """A config entry, with a reference to a YAML file next to the config read in its place."""
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        included = path.parent / value
        return _load(included.read_text(), included)
    return value


def _load(text: str, path: Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
