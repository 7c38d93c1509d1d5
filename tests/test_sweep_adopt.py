"""scripts/sweep_adopt.py: a run trained elsewhere becomes a sweep's point only if its saved config is the one
the sweep would run (its root directory aside) and it was tested; the sweep then skips it and its results list it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, SYNTHETIC
from tests.test_sweep import LR, K, held_by_another_process, read_csv, sweep, validated_tiny_config

spec = importlib.util.spec_from_file_location("sweep_adopt", REPO / "scripts" / "sweep_adopt.py")
sweep_adopt = importlib.util.module_from_spec(spec)
sys.modules["sweep_adopt"] = sweep_adopt
spec.loader.exec_module(sweep_adopt)


def test_only_the_run_root_may_differ() -> None:
    expected = {"trainer": {"default_root_dir": "/s/runs/p/seed0", "logger": {"save_dir": "/s/runs/p/seed0"}}, "lr": 1}
    actual = {"trainer": {"default_root_dir": "logs/x", "logger": {"save_dir": "logs/x"}}, "lr": 1}
    same = sweep_adopt.differences(
        sweep_adopt.normalized(expected, "/s/runs/p/seed0"), sweep_adopt.normalized(actual, "logs/x")
    )
    assert same == []
    actual["lr"], actual["extra"] = 2, True
    actual["trainer"]["logger"]["save_dir"] = "logs/elsewhere"  # a path outside the run's root is a setting
    found = sweep_adopt.differences(
        sweep_adopt.normalized(expected, "/s/runs/p/seed0"), sweep_adopt.normalized(actual, "logs/x")
    )
    assert found == [
        "trainer.logger.save_dir: 'logs/elsewhere' in the run, '<run root>' in the sweep's config",
        "lr: 2 in the run, 1 in the sweep's config",
        "extra: True in the run, not in the sweep's config",
    ]
    assert sweep_adopt.normalized("logs/xy/z", "logs/x") == "logs/xy/z"  # a prefix of a name is not the root


def test_a_monitored_checkpoint_means_the_sweep_would_have_tested() -> None:
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"monitor": "val/avg/loss"}}
    assert sweep_adopt.monitors_a_checkpoint({"trainer": {"callbacks": [checkpoint]}})
    checkpoint["init_args"] = {"every_n_train_steps": 10}
    assert not sweep_adopt.monitors_a_checkpoint({"trainer": {"callbacks": [checkpoint]}})
    assert not sweep_adopt.monitors_a_checkpoint({"trainer": {"callbacks": None}})


@pytest.mark.slow
def test_a_finished_run_is_adopted_and_a_different_or_untested_one_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = validated_tiny_config(tmp_path / "cfg" / "tiny.yaml")
    elsewhere, target = tmp_path / "elsewhere", tmp_path / "target"
    assert sweep.main(["--config", str(config), "--grid", f"{LR}=0.01", "--seeds", "1", "--out", str(elsewhere)]) == 0
    source = Path(read_csv(elsewhere / "results.csv")[1][0]["run_dir"])
    args = ["--config", str(config), "--out", str(target)]

    # another learning rate or seed: refused, naming the keys, and nothing left behind
    assert sweep_adopt.main([str(source), *args, "--grid", f"{LR}=0.02", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.init_args.lr: 0.01 in the run, 0.02 in the sweep's config" in err
    assert not (target / "runs").exists() or not any((target / "runs").iterdir())

    # untested (its test's event file gone): refused with the command that tests it
    untested = tmp_path / "untested" / source.name
    shutil.copytree(source, untested)
    events = sorted(untested.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns)
    assert len(events) == 2  # fit's, then test's
    events[-1].unlink()
    assert sweep_adopt.main([str(untested), *args, "--grid", f"{LR}=0.01", "--seed", "1"]) == 2
    assert "was not tested" in capsys.readouterr().err

    # the same point and seed: adopted; the sweep skips it and lists it with its source
    assert sweep_adopt.main([str(source), *args, "--grid", f"{LR}=0.01", "--seed", "1"]) == 0
    marker = json.loads((target / "runs" / "lr=0.01" / "seed1" / "done.json").read_text())
    assert marker["adopted_from"] == str(source) and not (Path(marker["run_dir"]) / "checkpoints").exists()
    assert sweep.main([*args, "--grid", f"{LR}=0.01", "--seeds", "1"]) == 0
    assert "0 ran, 1 skipped (done before), 0 failed" in capsys.readouterr().out
    columns, rows = read_csv(target / "results.csv")
    original = read_csv(elsewhere / "results.csv")[1][0]
    assert columns[:4] == [LR, "seed", "run_dir", "adopted_from"]
    assert {k: v for k, v in rows[0].items() if k.startswith(("val/", "test/"))} == {
        k: v for k, v in original.items() if k.startswith(("val/", "test/"))
    }
    assert sweep_adopt.main([str(source), *args, "--grid", f"{LR}=0.01", "--seed", "1"]) == 2  # done already


def test_a_point_a_sweep_job_is_running_is_not_adopted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    root = out / "runs" / "inner_steps=2" / "seed0"
    argv = [str(tmp_path / "elsewhere" / "version_0"), "--config", str(SYNTHETIC / "sequential_reptile.yaml")]
    argv += ["--grid", f"{K}=2", "--seed", "0", "--out", str(out)]
    with held_by_another_process(root):
        assert sweep_adopt.main(argv) == 2
    assert f"sweep_adopt: {root} is being run by another process" in capsys.readouterr().err
    assert not (out / "runs").exists()
