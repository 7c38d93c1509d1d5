"""Files a run owns are replaced atomically (a kill at any moment leaves the old file or the new one), next to
their final path so the rename never becomes a copy across filesystems; a run directory has one process at a
time."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from callbacks.periodic import StepCsv
from lightning_modules.lifecycle import AtomicCheckpointIO, RunDirectoryBusy, RunLock, read_checkpoint
from pretrained.files import atomic_writer
from tests.helpers import SYNTHETIC, log_dir, run_cli


class Killed(BaseException):
    """Stands for the process dying in the middle of a write."""


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "trajectory.csv"
    path.write_text("old\n")
    with pytest.raises(Killed), atomic_writer(path) as f:
        f.write("new, half")
        raise Killed
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["trajectory.csv"]


def test_checkpoints_are_written_beside_their_final_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[Path, Path]] = []
    real_replace = __import__("os").replace

    def replace(src: str, dst: str) -> None:
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("pretrained.files.os.replace", replace)
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    ((src, dst),) = renames
    assert dst == target and src.parent == target.parent  # the same directory, so the same filesystem
    assert torch.equal(read_checkpoint(target)["state_dict"]["w"], torch.ones(3))


def test_a_checkpoint_save_killed_midway_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 1}, target)

    def dies(*args, **kwargs) -> None:
        raise Killed

    monkeypatch.setattr("lightning_modules.lifecycle.checkpoint_file.torch.save", dies)
    with pytest.raises(Killed):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 2}, target)
    assert read_checkpoint(target)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_csv_rewrite_killed_midway_keeps_the_history(tmp_path: Path, monkeypatch) -> None:
    table = StepCsv("drift.csv", ["step", "l2"])
    table.path = tmp_path / "drift.csv"
    table.resume(0)
    table.append([[0, 0.0], [50, 1.5], [100, 2.5]])
    with open(table.path, "a") as f:
        f.write("150,3.")  # a row a killed run cut short
    history = table.path.read_text()

    def dies(*args, **kwargs) -> None:
        raise Killed

    monkeypatch.setattr("pretrained.files.os.replace", dies)
    with pytest.raises(Killed):
        table.resume(100)
    assert table.path.read_text() == history
    monkeypatch.undo()
    assert table.resume(100)  # the row at the resumed step is there
    with open(table.path, newline="") as f:
        assert list(csv.reader(f)) == [["step", "l2"], ["0", "0.0"], ["50", "1.5"], ["100", "2.5"]]


def test_a_run_directory_in_use_is_refused_and_left_untouched(tmp_path: Path) -> None:
    run = log_dir(run_cli(["--config", str(SYNTHETIC / "sequential_reptile.yaml"), "--trainer.max_steps=5"], tmp_path))
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    holder = RunLock(run)
    holder.acquire()
    try:
        resume = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
        with pytest.raises(RunDirectoryBusy, match=rf"run directory {run} is in use by process \d+ on "):
            run_cli([*resume, "--trainer.max_steps=10"], tmp_path)
        with pytest.raises(RunDirectoryBusy):
            run_cli(resume, tmp_path, subcommand="test")
    finally:
        holder.release()
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".run.lock"}
    assert after == {p: t for p, t in before.items() if p.name != ".run.lock"}
    run_cli([*resume, "--trainer.max_steps=10"], tmp_path)  # free again once the holder is gone
