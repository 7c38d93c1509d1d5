"""A resume always continues the newest state and keeps writing last.ckpt in the run directory, whatever the form
of the path it was given (relative as in the README, absolute, through a symlink), after the run directory was
moved or copied, and on the second and third resume in a row. Lightning alone compares checkpoint directories as
strings: any of these made it write last-v1.ckpt while last.ckpt stayed old, so the next resume redid steps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import SYNTHETIC, best_checkpoint_callback, load_checkpoint, log_dir, run_cli

SR = str(SYNTHETIC / "sequential_reptile.yaml")


def fit(root: Path, max_steps: int, *args: str) -> Path:
    return log_dir(run_cli(["--config", SR, f"--trainer.max_steps={max_steps}", *args], root))


def resume(run: Path, ckpt: Path | str, max_steps: int, root: Path) -> Path:
    args = ["--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt), f"--trainer.max_steps={max_steps}"]
    return log_dir(run_cli(args, root))


def checkpoint_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))


def assert_current(run: Path, step: int) -> None:
    assert checkpoint_files(run) == ["last.ckpt"]  # no last-v1.ckpt beside a stale last.ckpt
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == step


def test_readme_commands_with_relative_paths_resume_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = fit(Path("logs"), 4)
    relative = Path("logs") / run.relative_to(tmp_path / "logs") if run.is_absolute() else run
    for steps in (8, 12):
        again = resume(relative, relative / "checkpoints" / "last.ckpt", steps, Path("logs"))
        assert again.resolve() == run.resolve()
        assert_current(run, steps)
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]  # no version_1


@pytest.mark.parametrize(
    "form",
    [
        "absolute",
        pytest.param("symlink", marks=pytest.mark.slow),
        pytest.param("moved", marks=pytest.mark.slow),  # the fast suite moves a run in the best-record test below
        pytest.param("copied", marks=pytest.mark.slow),
    ],
)
def test_resume_keeps_last_ckpt_current(tmp_path: Path, form: str) -> None:
    run = fit(tmp_path / "logs", 4)
    if form == "symlink":
        (tmp_path / "link").symlink_to(run.parent)
        run = tmp_path / "link" / run.name
    elif form in ("moved", "copied"):
        target = tmp_path / "elsewhere" / "version_0"
        target.parent.mkdir()
        (shutil.move if form == "moved" else shutil.copytree)(run, target)
        run = target
    for steps in (8, 12, 16):  # a first, second and third resume
        resume(run, (run / "checkpoints" / "last.ckpt").absolute(), steps, tmp_path / "logs")
        assert_current(run, steps)


def test_a_moved_run_keeps_its_best_checkpoint_record(tmp_path: Path) -> None:
    """The monitoring ModelCheckpoint's record (best score and file) moves with the run: without that, a resume
    forgot the best score, saved a worse model as "best" and left the old best file behind."""
    best = best_checkpoint_callback(every_n_train_steps=3)
    run = fit(tmp_path / "logs", 9, "--trainer.val_check_interval=3", best)
    before = load_checkpoint(run / "checkpoints" / "last.ckpt")["callbacks"]
    target = tmp_path / "moved" / "version_0"
    target.parent.mkdir()
    shutil.move(run, target)
    resume(target, target / "checkpoints" / "last.ckpt", 12, tmp_path / "logs")
    after = load_checkpoint(target / "checkpoints" / "last.ckpt")["callbacks"]
    key = next(k for k in after if k.startswith("ModelCheckpoint"))
    assert after[key]["dirpath"] == str(target / "checkpoints")
    assert Path(after[key]["best_model_path"]).parent == target / "checkpoints"
    assert Path(after[key]["best_model_path"]).is_file()
    assert float(after[key]["best_model_score"]) <= float(before[key]["best_model_score"])
    assert len(list((target / "checkpoints").glob("best-*.ckpt"))) == 1
    assert_current_last = sorted(p.name for p in (target / "checkpoints").glob("last*.ckpt"))
    assert assert_current_last == ["last.ckpt"]
