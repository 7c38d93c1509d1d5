"""Bad checkpoint files, broken YAML and settings that would make a run wrong are refused with a message that
names the file or key and the fix, before any run directory is created or any file is written."""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lightning_modules.lifecycle import CheckpointFileError
from tests.helpers import SYNTHETIC, load_checkpoint, log_dir, run_cli

SR = str(SYNTHETIC / "sequential_reptile.yaml")


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good")
    return log_dir(run_cli(["--config", SR, "--trainer.max_steps=3"], root)) / "checkpoints" / "last.ckpt"


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bit_flipped(data: bytes) -> bytes:
    """One bit of the stored content (the zip's padding between records is not content, so the flip is put
    inside the pickled state: the `global_step` key)."""
    flipped = bytearray(data)
    flipped[data.index(b"global_step") + 3] ^= 0x04
    return bytes(flipped)


def random_bytes(data: bytes) -> bytes:
    return random.Random(0).randbytes(len(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"", r"is empty \(0 bytes\): its write was cut short"),
        (truncated, "is not a PyTorch checkpoint archive: it is truncated or is not a checkpoint"),
        (random_bytes, "is not a PyTorch checkpoint archive"),
        (bit_flipped, r"is corrupt: record '.*' fails its CRC-32 check"),
    ],
    ids=["empty", "truncated", "random", "bit-flip"],
)
def test_a_damaged_checkpoint_is_named_with_the_problem(
    tmp_path: Path, good_checkpoint: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    run = tmp_path / "run" / "version_0"
    bad = run / "checkpoints" / "last.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(damage(good_checkpoint.read_bytes()))
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(CheckpointFileError, match=message) as refused:
        run_cli(["--config", SR, "--ckpt_path", str(bad)], tmp_path / "logs")
    assert str(bad) in str(refused.value) and "resume from another checkpoint" in str(refused.value)
    assert sorted(p.name for p in run.rglob("*")) == before and not (tmp_path / "logs").exists()


def test_a_file_that_is_not_a_training_checkpoint_is_named(tmp_path: Path) -> None:
    plain = tmp_path / "weights.ckpt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointFileError, match=rf"{plain} holds no model state .*not a Lightning training"):
        run_cli(["--config", SR, "--ckpt_path", str(plain)], tmp_path / "logs")
    code = tmp_path / "code.ckpt"
    torch.save({"state_dict": {}, "thing": argparse.Namespace(x=1)}, code)  # an object: loading would run code
    with pytest.raises(CheckpointFileError, match=rf"{code} cannot be read as a training checkpoint"):
        run_cli(["--config", SR, "--ckpt_path", str(code)], tmp_path / "logs")


def test_a_missing_checkpoint_path_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "logs" / "synthetic" / "sequential_reptile" / "version_3" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointFileError, match=rf"checkpoint {missing} does not exist"):
        run_cli(["--config", SR, "--ckpt_path", str(missing)], tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_lightnings_checkpoint_keywords_are_refused_for_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--ckpt_path last is not supported here .* give the file"):
        run_cli(["--config", SR, "--ckpt_path", "last"], tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_broken_yaml_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    included = tmp_path / "_trainer.yaml"
    included.write_text("max_steps: 3\ncallbacks: [\n")
    config = tmp_path / "run.yaml"
    config.write_text((SYNTHETIC / "sequential_reptile.yaml").read_text().replace("_trainer.yaml", str(included)))
    with pytest.raises(SystemExit):
        run_cli(["--config", str(config)], tmp_path / "logs")
    assert f"{included}: not valid YAML" in capsys.readouterr().err
    config.write_text("model:\n  algorithm: {class_path: x\n bad: [\n")
    with pytest.raises(SystemExit):
        run_cli(["--config", str(config)], tmp_path / "logs")
    assert f"{config}: not valid YAML: expected ',' or '}}', but got ':' (line 3, column 5)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trainer.max_steps=0"], "trainer.max_steps must be positive"),
        (["--trainer.max_epochs=0"], "trainer.max_epochs must be positive"),
        (["--checkpoint.every_n_train_steps=0"], "checkpoint.every_n_train_steps must be a positive number"),
        (["--checkpoint.save_last=false"], "checkpoint.save_last must be true"),
        (["--checkpoint.save_on_exception=true"], "checkpoint.save_on_exception must be false"),
    ],
    ids=["max_steps=0", "max_epochs=0", "every_n_train_steps=0", "save_last=false", "save_on_exception"],
)
def test_settings_that_would_lose_the_run_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_cli(["--config", SR, *args], tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_evaluating_an_untrained_model_needs_asking_for(tmp_path: Path) -> None:
    for subcommand in ("validate", "test"):
        with pytest.raises(ValueError, match=rf"`{subcommand}` without --ckpt_path would score the untrained"):
            run_cli(["--config", SR], tmp_path / "logs", subcommand=subcommand)
    assert not (tmp_path / "logs").exists()
    cli = run_cli(["--config", SR, "--untrained=true"], tmp_path / "logs", subcommand="test")
    assert "test/avg/loss" in cli.trainer.callback_metrics


def test_a_good_checkpoint_still_loads(good_checkpoint: Path, tmp_path: Path) -> None:
    assert load_checkpoint(good_checkpoint)["global_step"] == 3
    run_cli(["--config", SR, "--ckpt_path", str(good_checkpoint)], tmp_path / "logs", subcommand="validate")
