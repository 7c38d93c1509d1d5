"""configs/offline/_trainer_tradeoff.yaml is _trainer.yaml's callback list with a larger alignment probe and its
standard error on, and the Efficiency callback added, and nothing else: callbacks leave training unchanged, so runs
made with it train as the committed ones."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.helpers import print_config

OFFLINE = Path(__file__).resolve().parents[1] / "configs" / "offline"


def test_only_the_probe_its_standard_error_and_efficiency_differ() -> None:
    base = yaml.safe_load((OFFLINE / "_trainer.yaml").read_text())["callbacks"]
    tradeoff = yaml.safe_load((OFFLINE / "_trainer_tradeoff.yaml").read_text())
    assert list(tradeoff) == ["callbacks"]
    expected = copy.deepcopy(base)
    (alignment,) = [c for c in expected if c["class_path"] == "callbacks.alignment.GradientAlignment"]
    alignment["init_args"].update(standard_error=True, probe_batch_size=64)
    expected.append({"class_path": "callbacks.efficiency.Efficiency"})
    assert tradeoff["callbacks"] == expected


def test_given_after_a_method_config_it_keeps_the_rest_of_the_trainer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(OFFLINE / "sequential_reptile.yaml"), "--trainer", str(OFFLINE / "_trainer_tradeoff.yaml")]
    trainer = print_config(tmp_path, capsys, *args)["trainer"]
    base = yaml.safe_load((OFFLINE / "_trainer.yaml").read_text())
    assert {k: trainer[k] for k in base if k != "callbacks"} == {k: v for k, v in base.items() if k != "callbacks"}
    paths = [c["class_path"] for c in trainer["callbacks"]]
    assert paths[-1] == "callbacks.efficiency.Efficiency"
    (alignment,) = [c for c in trainer["callbacks"] if c["class_path"] == "callbacks.alignment.GradientAlignment"]
    assert alignment["init_args"]["standard_error"] is True
