"""The method registry: it lists exactly the configs on disk, their algorithms import, each label names one method,
and a method added as a config file alone reaches the shell scripts, the report and Fig. 3 without other edits."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lightning_modules.algorithms import MTL, Aggregator, Algorithm, registry

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(d.name for d in CONFIGS.iterdir() if d.is_dir() and any(d.glob("[!_]*.yaml")))
MEAN = """data: _data.yaml
trainer: _trainer.yaml
model:
  model: _model.yaml
  algorithm:
    class_path: lightning_modules.algorithms.aggregator.Aggregator
    init_args:
      tasks_per_step: 3
      aggregator: {class_path: torchjd.aggregation.Mean}
optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.05}}
"""


def script(name: str) -> ModuleType:
    """A module of scripts/ (not a package), loaded once under its own name as the scripts import each other."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


# ------------------------------------------------------------------------------------------ the repository
def test_every_experiment_folder_is_listed() -> None:
    assert registry.experiments() == EXPERIMENTS and {"offline", "synthetic"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_registry_lists_exactly_the_configs_on_disk(experiment: str) -> None:
    on_disk = sorted(p.stem for p in (CONFIGS / experiment).glob("*.yaml") if not p.name.startswith("_"))
    found = registry.methods(experiment)
    assert sorted(m.key for m in found) == on_disk
    assert [m.rank for m in found] == sorted(m.rank for m in found)
    for method in found:
        assert method.experiment == experiment and method.config == CONFIGS / experiment / f"{method.key}.yaml"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_config_names_an_importable_algorithm(experiment: str) -> None:
    import yaml

    for method in registry.methods(experiment):
        class_path = yaml.safe_load(method.config.read_text())["model"]["algorithm"]["class_path"]
        module, _, name = class_path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is method.algorithm, method.key
        assert issubclass(method.algorithm, Algorithm), method.key


def test_each_label_names_one_method() -> None:
    """Different labels have different config names, and a config is named after its label's plain config name
    (configs/mlqa adds its source: squad_mtl and tydiqa_mtl are both MTL)."""
    plain = registry.plain_keys()
    assert len(set(plain.values())) == len(plain)
    for experiment in EXPERIMENTS:
        for method in registry.methods(experiment):
            key = plain[method.label]
            assert method.key == key or method.key.endswith(f"_{key}"), (experiment, method.key, method.label)
    own = {m.algorithm: vars(m.algorithm).get("label") for e in EXPERIMENTS for m in registry.methods(e)}
    assert all(own.values()) and len(set(own.values())) == len(own), own  # every class its own, distinct label


def test_labels_follow_the_paper_then_the_config_name() -> None:
    labels = registry.labels()
    assert labels["sequential_reptile"] == "Seq. Reptile" and labels["stl"] == "STL" and labels["mtl"] == "MTL"
    assert labels["cagrad"] == "CAGrad" and labels["upgrad"] == "UPGrad"  # the adapter: its aggregator's name
    synthetic = registry.methods("synthetic")
    paper = [m.label for m in synthetic if m.label in registry.PAPER_ORDER]
    assert paper == [label for label in registry.PAPER_ORDER if label in paper]
    others = [m.key for m in synthetic if m.label not in registry.PAPER_ORDER]
    assert others == sorted(others) and [m.key for m in synthetic][-len(others) :] == others


def test_every_row_of_the_papers_tables_has_a_config() -> None:
    tables = script("paper_tables").TABLES
    for table in tables.values():
        rows = {table.method_prefix + method for method in table.rows}
        missing = rows - set(registry.keys(table.experiment))
        assert not missing, f"Table {table.number}: no config for {sorted(missing)}"


# ------------------------------------------------------------------------------------ what makes a label
def write_config(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


class Unlabelled(MTL):
    """A subclass that gives itself no label: it must not show as its parent."""


def test_mtl_on_one_task_is_stl_and_an_unlabelled_class_shows_its_name(tmp_path: Path) -> None:
    shutil.copytree(CONFIGS / "synthetic", tmp_path / "synthetic")
    folder = tmp_path / "synthetic"
    one_task = folder / "_one_task.yaml"
    one_task.write_text("tasks:\n  - class_path: datamodules.SyntheticTaskDataModule\n    init_args: {name: t1}\n")
    mtl = (folder / "mtl.yaml").read_text()
    write_config(folder, "single", mtl.replace("_data.yaml", "_one_task.yaml"))
    write_config(folder, "subclass", mtl.replace("lightning_modules.algorithms.MTL", f"{__name__}.Unlabelled"))
    labels = {m.key: m.label for m in registry.methods("synthetic", tmp_path)}
    assert labels["single"] == "STL" and labels["mtl"] == "MTL" and labels["subclass"] == "Unlabelled"
    assert vars(Aggregator)["label"] == "{aggregator}"  # filled with the aggregator's class name


def test_a_config_without_an_algorithm_is_named(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    write_config(tmp_path / "x", "broken", "model:\n  algorithm:\n    class_path: lightning_modules.algorithms.Nope\n")
    with pytest.raises(ValueError, match=r"broken.yaml: cannot import the algorithm lightning_modules.algorithms.Nope"):
        registry.methods("x", tmp_path)
    write_config(tmp_path / "x", "broken", "model:\n  algorithm:\n    class_path: torch.nn.Linear\n")
    with pytest.raises(ValueError, match="is not a lightning_modules.algorithms.Algorithm"):
        registry.methods("x", tmp_path)
    write_config(tmp_path / "x", "broken", "trainer: {}\n")
    with pytest.raises(ValueError, match="no model.algorithm.class_path"):
        registry.methods("x", tmp_path)
    with pytest.raises(FileNotFoundError, match="no experiment 'y'"):
        registry.methods("y", tmp_path)


# ------------------------------------------------------------------------- a new method is a config file
def test_a_new_config_reaches_the_scripts_the_report_and_fig3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(CONFIGS / "synthetic", tmp_path / "synthetic")
    write_config(tmp_path / "synthetic", "mean", MEAN)
    before = registry.keys("synthetic")
    after = registry.keys("synthetic", tmp_path)
    assert [k for k in after if k != "mean"] == before and after.index("mean") > after.index("sequential_reptile")

    assert script("methods").main(["synthetic", "--configs", str(tmp_path), "--labels"]) == 0
    assert "mean\tMean" in capsys.readouterr().out.splitlines()
    for shell, experiment in (("run_synthetic.sh", "synthetic"), ("run_offline_comparison.sh", "offline")):
        assert f"scripts/methods.py {experiment})" in (REPO / "scripts" / shell).read_text()

    assert ("mean", "Mean") in script("fig3").methods(tmp_path)
    assert [key for key, _ in script("fig3").methods()] == before

    report = script("report")
    monkeypatch.setattr(registry, "CONFIGS", tmp_path)
    assert report.display_names(["mean", "mtl"]) == {"mean": "Mean", "mtl": "MTL"}
    assert sorted(["mean", "sequential_reptile", "mtl"], key=report.method_key) == ["mtl", "sequential_reptile", "mean"]
