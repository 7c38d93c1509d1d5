"""Faults as they happen to real runs, on real `python train.py fit` processes: a scheduler's SIGTERM, kill -9 at
random moments (also while a checkpoint or a CSV is being written), and a second process resuming a run that is
still training. Each run ends bitwise identical to an uninterrupted one, and no file is left half-written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_modules.lifecycle import RunDirectoryBusy, read_checkpoint
from lightning_modules.lifecycle.run_lock import OWNER_NAME
from tests.helpers import QUIET, REPO, SYNTHETIC, assert_same_run, log_dir, read_trajectory, run_cli

pytestmark = pytest.mark.slow
STEPS = 4000  # ~5 s of synthetic training after a ~7 s start: time to send a signal while it trains
CONFIG = str(SYNTHETIC / "sequential_reptile.yaml")
SETTINGS = ["--checkpoint.every_n_train_steps=25", "--trainer.callbacks.init_args.plot=false"]


def start(args: list[str], root: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "train.py", "fit", *args, f"--trainer.default_root_dir={root}", *QUIET]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)


def rows(run: Path) -> int:
    try:
        return len(read_trajectory(run / "trajectory.csv"))
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def wait_until(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before the fault was injected"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def straight_run(root: Path) -> Path:
    return log_dir(run_cli(["--config", CONFIG, f"--trainer.max_steps={STEPS}", *SETTINGS], root))


def test_sigterm_exits_nonzero_saves_the_step_and_the_resume_is_exact(tmp_path: Path) -> None:
    straight = straight_run(tmp_path / "straight")
    run = tmp_path / "run" / "synthetic" / "sequential_reptile" / "version_0"
    process = start(["--config", CONFIG, f"--trainer.max_steps={STEPS}", *SETTINGS], tmp_path / "run", tmp_path / "log")
    wait_until(lambda: rows(run) > 300, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM  # `fit && test` does not go on to test
    assert "SIGTERM received" in (tmp_path / "log").read_text()
    stopped_at = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    assert 250 < stopped_at < STEPS
    last_row = read_trajectory(run / "trajectory.csv")[-1]
    assert int(last_row["step"]) == stopped_at  # the file ends where the checkpoint does

    resume = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    assert log_dir(run_cli(resume, tmp_path / "unused")) == run
    assert_same_run(straight, run, STEPS)


# method: (steps, kill points drawn in trajectory rows): long enough to be killed while training
KILLED = {
    "sequential_reptile": (STEPS, 3),
    "reptile": (STEPS, 2),
    "pcgrad": (STEPS // 2, 2),
    "gradnorm": (STEPS // 2, 2),
    "gradvac": (STEPS // 2, 2),
}


@pytest.mark.parametrize("method", KILLED)
def test_kill_9_at_random_moments_loses_no_file_and_ends_exactly(tmp_path: Path, method: str) -> None:
    steps, kills = KILLED[method]
    config = str(SYNTHETIC / f"{method}.yaml")
    fit = ["--config", config, f"--trainer.max_steps={steps}", *SETTINGS]
    straight = log_dir(run_cli(fit, tmp_path / "straight"))
    run = tmp_path / "run" / "synthetic" / method / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    chance = random.Random(method)
    for attempt in range(kills):
        args = ["--config", str(run / "config.yaml"), "--ckpt_path", str(last)] if last.exists() else fit
        before = rows(run)
        process = start(args, tmp_path / "run", tmp_path / f"log{attempt}")
        target = before + chance.randint(100, steps // 4)
        wait_until(lambda target=target: rows(run) >= target, process)
        time.sleep(chance.uniform(0, 0.05))
        process.kill()
        process.wait()
        checkpoint = read_checkpoint(last)  # complete and undamaged, whenever the kill came
        assert 0 < checkpoint["global_step"] < steps
        read_trajectory(run / "trajectory.csv")  # readable

    resume = ["--config", str(run / "config.yaml"), "--ckpt_path", str(last)]
    assert log_dir(run_cli(resume, tmp_path / "unused")) == run
    assert_same_run(straight, run, steps)
    leftovers = [p.name for d in (run, run / "checkpoints") for p in d.glob(".*.tmp")]
    assert leftovers == []  # temporary files of interrupted writes are cleared when the run is taken up again


def test_a_second_process_cannot_resume_a_run_that_is_training(tmp_path: Path) -> None:
    run = log_dir(run_cli(["--config", CONFIG, "--trainer.max_steps=50"], tmp_path / "run"))
    resume = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    process = start([*resume, "--trainer.max_steps=1000000"], tmp_path / "run", tmp_path / "log")
    try:
        wait_until(lambda: (run / OWNER_NAME).is_file() and rows(run) > 100, process)
        with pytest.raises(RunDirectoryBusy, match=rf"in use by process {process.pid} on "):
            run_cli([*resume, "--trainer.max_steps=1000"], tmp_path / "unused")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM
    assert not (run / OWNER_NAME).exists()
    step = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    run_cli([*resume, f"--trainer.max_steps={step + 5}"], tmp_path / "unused")  # the run directory is free again
