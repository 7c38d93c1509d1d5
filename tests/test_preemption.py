"""SIGTERM (a scheduler's preemption notice) and SIGINT (Ctrl+C) during training: the run finishes the current
step, saves last.ckpt at that step, exits 128 + the signal number, and a resume from that checkpoint ends bitwise
identical to an uninterrupted run. The signal is sent by the process to itself at the start of a chosen step,
here in-process (fast) for every method with state; tests/test_faults.py sends it from outside."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback

from tests.helpers import SYNTHETIC, add_callback, assert_same_run, load_checkpoint, log_dir, run_cli


class SignalAtStep(Callback):
    """Sends `signum` to this process when training step `step` (1-based) starts; `again` sends it twice."""

    def __init__(self, step: int, signum: int = int(signal.SIGTERM), again: bool = False) -> None:
        self.step, self.signum, self.again = step, signum, again

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step + 1 == self.step:
            os.kill(os.getpid(), self.signum)
            if self.again:
                os.kill(os.getpid(), self.signum)


# method config, total steps, stop step: each stop falls inside an inner trajectory / between outer updates
METHODS = {
    "sequential_reptile": (20, 13),  # K = 10: step 13 is the 3rd inner step of the 2nd trajectory
    "reptile": (40, 17),  # 3 tasks x K = 10 per outer update: inside the 2nd task's block
    "pcgrad": (20, 7),
    "gradnorm": (20, 7),  # learned task weights and their Adam state
    "gradvac": (20, 7),  # EMA targets
}


def fit(config: str, root: Path, max_steps: int, *args: str) -> Path:
    return log_dir(run_cli(["--config", config, f"--trainer.max_steps={max_steps}", *args], root))


def stop_with_signal(config: str, root: Path, max_steps: int, step: int, signum: int, again: bool = False) -> int:
    sender = add_callback("tests.test_preemption.SignalAtStep", step=step, signum=int(signum), again=again)
    with pytest.raises(SystemExit) as stopped:
        fit(config, root, max_steps, sender)
    return stopped.value.code


@pytest.mark.parametrize(
    "method",
    [pytest.param(m, marks=() if m == "sequential_reptile" else pytest.mark.slow) for m in METHODS],
)
def test_sigterm_saves_the_step_and_the_resume_is_exact(tmp_path: Path, method: str) -> None:
    config = str(SYNTHETIC / f"{method}.yaml")
    total, stop = METHODS[method]
    straight = fit(config, tmp_path / "straight", total)

    assert stop_with_signal(config, tmp_path / "stopped", total, stop, signal.SIGTERM) == 128 + signal.SIGTERM
    (run,) = (tmp_path / "stopped").glob("*/*/version_0")
    last = run / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == stop  # the step that was running when the signal came

    resumed = log_dir(run_cli(["--config", str(run / "config.yaml"), "--ckpt_path", str(last)], tmp_path / "x"))
    assert resumed == run
    assert_same_run(straight, run, total)


def test_ctrl_c_saves_and_a_second_ctrl_c_aborts_without_saving(tmp_path: Path) -> None:
    config = str(SYNTHETIC / "sequential_reptile.yaml")
    code = stop_with_signal(config, tmp_path / "once", 20, 5, signal.SIGINT)
    assert code == 128 + signal.SIGINT
    (run,) = (tmp_path / "once").glob("*/*/version_0")
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 5

    # Twice: Lightning's own interrupt handling (exit 1); the last periodic save (none yet at step 5) is all
    # that is kept, so nothing half-trained is presented as a stop point.
    code = stop_with_signal(config, tmp_path / "twice", 20, 5, signal.SIGINT, again=True)
    assert code == 1
    assert not list((tmp_path / "twice").rglob("last.ckpt"))


def read_csv_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [4, 5], ids=["at-a-validation-step", "mid-inner-loop"])
def test_offline_default_stopped_by_sigterm_resumes_exactly(tmp_path: Path, monkeypatch, stop: int) -> None:
    """The offline Sequential Reptile config (fixture Bible, tiny BERT): validation every half epoch with the
    best checkpoint, and the alignment, masked-LM and drift callbacks; their CSVs, the best checkpoint and the
    final state match an uninterrupted run."""
    from tests.test_offline_config import OFFLINE, tiny_overrides

    monkeypatch.chdir(tmp_path)
    configs = ["--config", str(OFFLINE / "sequential_reptile.yaml"), "--config", str(tiny_overrides(tmp_path))]
    settings = ["--optimizer.init_args.lr=0.01", "--checkpoint.every_n_train_steps=3"]
    straight = log_dir(run_cli([*configs, *settings], tmp_path / "straight"))
    assert load_checkpoint(straight / "checkpoints" / "last.ckpt")["global_step"] == 8

    sender = add_callback("tests.test_preemption.SignalAtStep", step=stop)
    with pytest.raises(SystemExit) as stopped:
        run_cli([*configs, *settings, sender], tmp_path / "stopped")
    assert stopped.value.code == 128 + signal.SIGTERM
    (run,) = (tmp_path / "stopped").glob("*/*/version_0")
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == stop
    run_cli(["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], tmp_path)

    assert_same_run(straight, run, 8, trajectory=False)
    for name in ("alignment.csv", "mlm.csv", "drift.csv"):
        assert read_csv_rows(run / name) == read_csv_rows(straight / name), name
    best = sorted(p.name for p in (straight / "checkpoints").glob("best-*.ckpt"))
    assert best and sorted(p.name for p in (run / "checkpoints").glob("best-*.ckpt")) == best
