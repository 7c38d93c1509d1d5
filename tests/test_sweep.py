"""scripts/sweep.py: grid parsing and point ids, the runs it plans (fit arguments, skipping, threads), results.csv
from done markers, metrics from event files, the slurm options on submitit; and, in subprocesses, a 2x2 grid over
2 seeds with validation and test, a rerun that skips what finished, and a failing point beside a good one through
the slurm path on submitit's local cluster."""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import submitit
import yaml

from tests.helpers import REPO, SYNTHETIC, tiny_config

spec = importlib.util.spec_from_file_location("sweep", REPO / "scripts" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)
sys.modules["sweep"] = sweep  # dataclasses and cloudpickle look the module up by name
spec.loader.exec_module(sweep)

K, LR = "model.algorithm.init_args.inner_steps", "optimizer.init_args.lr"


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def validated_tiny_config(path: Path) -> Path:
    """The tiny config with a ModelCheckpoint on the validation loss, so runs have a best checkpoint to test."""
    algorithm = {
        "class_path": "lightning_modules.algorithms.SequentialReptile",
        "init_args": {"inner_steps": 2, "outer_lr": 0.5, "q": 0.5},
    }
    tiny_config(path, algorithm, steps_per_epoch=2, max_steps=4, trajectory=False)
    config = yaml.safe_load(path.read_text())
    best = {"monitor": "val/avg/loss", "mode": "min", "save_top_k": 1, "filename": "best-{step}"}
    config["trainer"]["callbacks"].append(
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": best}
    )
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --------------------------------------------------------------------------- fast
def test_grid_points_and_their_ids() -> None:
    grid = sweep.parse_grid([f"{K}=10,50", f"{LR}=1e-4,3e-4"])
    assert grid == {K: ["10", "50"], LR: ["1e-4", "3e-4"]}
    points = sweep.grid_points(grid)
    ids = [sweep.point_id(p, sweep.short_names(list(grid))) for p in points]
    assert ids == [f"inner_steps={k}__lr={lr}" for k in (10, 50) for lr in ("0.0001", "0.0003")]
    assert points[1] == {K: "10", LR: "3e-4"}  # train.py gets the values as given

    # keys with the same last component keep as many components as tell them apart
    names = sweep.short_names(["model.algorithm.init_args.lr", LR, K])
    assert names == {
        "model.algorithm.init_args.lr": "algorithm.init_args.lr",
        LR: "optimizer.init_args.lr",
        K: "inner_steps",
    }
    # characters a directory name cannot hold are replaced, with a hash so that values stay apart
    names = {"x.name": "name"}
    odd, plain = sweep.point_id({"x.name": "a/b c"}, names), sweep.point_id({"x.name": "a_b_c"}, names)
    assert re.fullmatch(r"name=a_b_c-[0-9a-f]{6}", odd) and plain == "name=a_b_c"
    assert sweep.point_id({}, {}) == "default"

    for bad, message in [
        ("inner_steps", "expected KEY=V1,V2"),
        (f"{K}=1,,2", "empty value"),
        ("seed_everything=1,2", "sets seed_everything itself"),
    ]:
        with pytest.raises(ValueError, match=message):
            sweep.parse_grid([bad])
    with pytest.raises(ValueError, match="given twice"):
        sweep.parse_grid([f"{K}=1", f"{K}=2"])


def test_plan_builds_the_fit_commands_and_skips_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    config = SYNTHETIC / "sequential_reptile.yaml"
    argv = ["--config", str(config), "--grid", f"{K}=1,2", "--seeds", "3", "4", "--out", str(tmp_path), "--jobs", "3"]
    args, extra = sweep.parse_args([*argv, "--", "--trainer.max_steps", "4"])
    done = tmp_path / "runs" / "inner_steps=2" / "seed3" / "done.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")

    runs, roots, skipped = sweep.plan(args, extra)
    assert skipped == 1 and len(roots) == 4 and roots[2] == done.parent
    assert [r.label for r in runs] == ["inner_steps=1 seed 3", "inner_steps=1 seed 4", "inner_steps=2 seed 4"]
    root = tmp_path / "runs" / "inner_steps=1" / "seed4"
    assert runs[1].root == str(root) and runs[1].grid == {K: "1"} and runs[1].seed == 4
    assert runs[1].fit_args == [
        "--config", str(config), f"--{K}=1", "--seed_everything", "4", "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "4",
    ]  # fmt: skip
    assert runs[1].env == {"OMP_NUM_THREADS": "2"}  # 8 cores // 3 jobs
    args, extra = sweep.parse_args([*argv, "--executor", "slurm"])
    assert sweep.plan(args, extra)[0][0].env == {}  # SLURM sets the threads of its allocation
    args, extra = sweep.parse_args([*argv, "--grid", f"{K}=1"])
    with pytest.raises(ValueError, match="given twice"):
        sweep.plan(args, extra)


def test_results_csv_is_rebuilt_from_the_done_markers(tmp_path: Path) -> None:
    def done(point: str, seed: int, row: dict[str, Any]) -> Path:
        root = tmp_path / "runs" / point / f"seed{seed}"
        root.mkdir(parents=True)
        (root / "done.json").write_text(json.dumps(row))
        return root

    tested = {"val/b/loss": 2.0, "val/a/loss": 1.0, "test/a/loss": 1.5}
    a2 = done("k=2", 1, {K: "2", "seed": 1, "run_dir": "r/k2", **tested})
    a10 = done("k=10", 1, {K: "10", "seed": 1, "run_dir": "r/k10", "val/a/loss": 0.5})  # not tested
    done("old", 5, {"other.key": "x", "seed": 5, "run_dir": "r/old"})  # a marker of an earlier grid
    (tmp_path / "runs" / "k=3" / "seed1").mkdir(parents=True)  # unfinished: no marker, no row

    path = sweep.write_results(tmp_path, [a2, a10])
    columns, rows = read_csv(path)
    assert columns == [K, "other.key", "seed", "run_dir", "val/a/loss", "val/b/loss", "test/a/loss"]
    assert [(r[K], r["seed"], r["run_dir"]) for r in rows] == [
        ("2", "1", "r/k2"),
        ("10", "1", "r/k10"),
        ("", "5", "r/old"),
    ]
    assert rows[0]["test/a/loss"] == "1.5" and rows[1]["test/a/loss"] == "" and rows[1]["val/b/loss"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "runs"]  # no temporary file left


def test_metrics_are_the_last_validation_and_the_test_scalars(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(tmp_path) as writer:
        for step, value in [(2, 3.0), (4, 1.0), (4, 2.0)]:
            writer.add_scalar("val/avg/loss", value, step)
        writer.add_scalar("train/loss", 9.0, 4)
        writer.add_scalar("test/avg/loss", 1.5, 2)
    assert sweep.read_metrics(tmp_path) == {"val/avg/loss": 2.0, "test/avg/loss": 1.5}

    lightning_csv = tmp_path / "csv"
    lightning_csv.mkdir()
    (lightning_csv / "metrics.csv").write_text("step,train/loss,val/x\n1,0.5,\n3,,0.25\n5,,0.125\n")
    assert sweep.read_metrics(lightning_csv) == {"val/x": 0.125}


def spy_update_parameters(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    original = submitit.AutoExecutor.update_parameters

    def spy(self: submitit.AutoExecutor, **kwargs: Any) -> None:
        calls.append(kwargs)
        original(self, **kwargs)

    monkeypatch.setattr(submitit.AutoExecutor, "update_parameters", spy)
    return calls


def test_slurm_options_become_submitit_slurm_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_update_parameters(monkeypatch)
    options = sweep.parse_options(["partition=gpu", "gpus_per_node=1", "timeout_min=600", "constraint=a100|h100"])
    assert options == {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 600, "constraint": "a100|h100"}
    # the local cluster checks every slurm_ name against SlurmExecutor's parameters, then ignores it
    executor = sweep.make_executor("slurm", tmp_path / "submitit", 3, options, cluster="local")
    assert executor.cluster == "local"
    assert calls[-1] == {
        "slurm_array_parallelism": 3,
        "slurm_partition": "gpu",
        "slurm_gpus_per_node": 1,
        "slurm_timeout_min": 600,
        "slurm_constraint": "a100|h100",
    }
    with pytest.raises(NameError, match="partitionn"):
        sweep.make_executor("slurm", tmp_path / "submitit", 3, {"partitionn": "gpu"}, cluster="local")

    before = len(calls)
    local = sweep.make_executor("local", tmp_path / "submitit", 2, {})
    assert local.cluster == "local" and local.parameters["timeout_min"] == sweep.LOCAL_TIMEOUT_MIN
    assert not any(k.startswith("slurm_") for call in calls[before:] for k in call)


HOLD_POINT = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("sweep", sys.argv[1])
sweep = importlib.util.module_from_spec(spec); sys.modules["sweep"] = sweep; spec.loader.exec_module(sweep)
with sweep.point_lock(Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def held_by_another_process(root: Path) -> Iterator[None]:
    """`root`'s point lock, held by another live process (as a running sweep job holds it) until the block ends,
    when that process is killed with SIGKILL."""
    argv = [sys.executable, "-c", HOLD_POINT, str(REPO / "scripts" / "sweep.py"), str(root)]
    holder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_run_another_process_holds_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "inner_steps=2" / "seed0"
    root.mkdir(parents=True)
    (root / "events.out.tfevents.1").write_text("written by the sweep running this point")
    run = sweep.Run("inner_steps=2", {K: "2"}, 0, str(root), ["--bogus"], sys.executable, str(REPO), {})
    with held_by_another_process(root):
        lock = tmp_path / ".locks" / "inner_steps=2.seed0.lock"
        busy = f"{root} is being run by another process, which holds {lock}: nothing was deleted"
        with pytest.raises(sweep.PointBusy, match=re.escape(busy)):
            sweep.run_point(run)
        assert (root / "events.out.tfevents.1").read_text() == "written by the sweep running this point"
    with sweep.point_lock(root):  # the holder was killed: the kernel released its lock
        pass
    # a run another sweep finished after this one was planned is returned as it is, not trained again
    (root / "done.json").write_text(json.dumps({K: "2", "seed": 0, "test/avg/loss": 0.5}))
    assert sweep.run_point(run) == {K: "2", "seed": 0, "test/avg/loss": 0.5}
    assert (root / "events.out.tfevents.1").is_file()


# --------------------------------------------------------------------------- slow: real runs
@pytest.mark.slow
def test_grid_over_seeds_runs_tests_and_a_rerun_skips_what_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = validated_tiny_config(tmp_path / "cfg" / "tiny.yaml")
    out = tmp_path / "sweep"
    argv = ["--config", str(config), "--grid", f"{K}=1,2", "--grid", f"{LR}=0.01,3e-2", "--seeds", "1", "2"]
    argv += ["--out", str(out), "--jobs", "2"]
    assert sweep.main(argv) == 0
    assert "8 ran, 0 skipped (done before), 0 failed" in capsys.readouterr().out

    columns, rows = read_csv(out / "results.csv")
    assert columns[:4] == [K, LR, "seed", "run_dir"]
    metrics = ["val/a/loss", "val/avg/loss", "val/b/loss", "test/a/loss", "test/avg/loss", "test/b/loss"]
    assert columns[4:] == metrics
    expected = [(k, lr, s) for k in ("1", "2") for lr in ("0.01", "3e-2") for s in ("1", "2")]
    assert [(r[K], r[LR], r["seed"]) for r in rows] == expected
    for row in rows:
        point = f"inner_steps={row[K]}__lr={float(row[LR])!r}"
        assert row["run_dir"] == str(out / "runs" / point / f"seed{row['seed']}" / "cfg" / "tiny" / "version_0")
        assert all(float(row[m]) > 0 for m in metrics)
        saved = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())
        assert saved["seed_everything"] == int(row["seed"])
        assert saved["model"]["algorithm"]["init_args"]["inner_steps"] == int(row[K])
        assert saved["optimizer"]["init_args"]["lr"] == float(row[LR])
    assert len({r["test/avg/loss"] for r in rows}) == 8  # every point and seed trained differently

    # a rerun skips the finished runs and starts an unfinished one from scratch
    markers = sorted((out / "runs").glob("*/seed*/done.json"))
    unfinished = markers[0].parent
    markers[0].unlink()
    (unfinished / "stray").write_text("left by an interrupted run")
    mtimes = {m: m.stat().st_mtime_ns for m in markers[1:]}
    assert sweep.main(argv) == 0
    assert "1 ran, 7 skipped (done before), 0 failed" in capsys.readouterr().out
    assert {m: m.stat().st_mtime_ns for m in markers[1:]} == mtimes
    assert not (unfinished / "stray").exists() and len(list(unfinished.rglob("version_*"))) == 1
    assert read_csv(out / "results.csv")[1] == rows  # the same seed retrains the same run


@pytest.mark.slow
def test_a_failing_point_is_reported_and_the_others_finish_on_the_slurm_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = spy_update_parameters(monkeypatch)
    monkeypatch.setattr(sweep, "make_executor", functools.partial(sweep.make_executor, cluster="local"))
    out = tmp_path / "sweep"
    argv = ["--config", str(SYNTHETIC / "sequential_reptile.yaml"), "--grid", f"{K}=-1,2", "--seeds", "1"]
    argv += ["--out", str(out), "--jobs", "2", "--executor", "slurm", "--slurm", "partition=gpu"]
    argv += ["--slurm", "timeout_min=600", "--", "--trainer.max_steps", "4"]
    assert sweep.main(argv) == 1
    printed = capsys.readouterr().out
    assert "1 ran, 0 skipped (done before), 1 failed" in printed
    assert {"slurm_array_parallelism": 2, "slurm_partition": "gpu", "slurm_timeout_min": 600} in calls

    assert (
        "FAILED inner_steps=-1 seed 1: RuntimeError: train.py fit exited with status 1 (its error is in the log)"
        in printed
    )
    log = Path(re.search(r"failed: inner_steps=-1 seed 1: log (\S+)", printed).group(1))
    assert log.parent == out / "submitit"
    assert "inner_steps (K) must be >= 1, got -1" in log.read_text()
    columns, rows = read_csv(out / "results.csv")
    assert columns == [K, "seed", "run_dir"]  # the synthetic config has no validation: nothing to test
    assert [(r[K], r["seed"]) for r in rows] == [("2", "1")]
    assert not (out / "runs" / "inner_steps=-1" / "seed1" / "done.json").exists()


@pytest.mark.parametrize("grid", [[], ["--grid", "data.seed=1,2"]])
def test_several_seeds_say_what_they_vary(tmp_path: Path, capsys: pytest.CaptureFixture[str], grid: list[str]) -> None:
    """--seeds vary seed_everything only: the task order follows data.seed, which the user is told unless the
    grid varies it (finished runs, so nothing is started)."""
    points = ["seed=1", "seed=2"] if grid else ["default"]  # a point is named by the last key component
    for point in points:
        for seed in (0, 1):
            root = tmp_path / "runs" / point / f"seed{seed}"
            root.mkdir(parents=True)
            (root / "done.json").write_text(json.dumps({"seed": seed, "run_dir": str(root)}))
    args = ["--config", str(SYNTHETIC / "mtl.yaml"), *grid, "--seeds", "0", "1", "--out", str(tmp_path)]
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert ("task order and each task's shuffling follow data.seed" in out) is not bool(grid)
    assert "0 ran, 4 skipped" in out if grid else "0 ran, 2 skipped" in out


@pytest.mark.slow
def test_a_sweep_started_twice_refuses_the_run_the_first_is_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same sweep started again (a second terminal, a requeued job) while its first run trains: the second is
    refused, the first keeps its files, and once the first is killed a rerun trains the point."""
    config = validated_tiny_config(tmp_path / "cfg" / "tiny.yaml")
    out = tmp_path / "sweep"
    argv = ["--config", str(config), "--grid", f"{K}=2", "--seeds", "0", "--out", str(out), "--jobs", "1"]
    first = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "sweep.py"), *argv, "--", "--trainer.max_steps", "100000"],
        cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    root = out / "runs" / "inner_steps=2" / "seed0"
    try:
        deadline = time.monotonic() + 120
        while not list(root.glob("*/*/version_0/checkpoints")):  # training has started
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        assert sweep.main(argv) == 1
        printed = capsys.readouterr().out
        assert f"FAILED inner_steps=2 seed 0: sweep.PointBusy: {root} is being run by another process, which" in printed
        assert first.poll() is None and len(list(root.glob("*/*/version_*"))) == 1  # still training, in its own run
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert sweep.main(argv) == 0
    assert "1 ran, 0 skipped (done before), 0 failed" in capsys.readouterr().out
    assert len(read_csv(out / "results.csv")[1]) == 1
