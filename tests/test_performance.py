"""The `performance:` settings: the matmul precision is set and recorded in the checkpoint, and compiling a model
without an encoder is refused naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import load_checkpoint, log_dir, run_cli, tiny_config

MTL = {"class_path": "lightning_modules.algorithms.MTL", "init_args": {"tasks_per_step": 2, "q": 0.5}}


@pytest.fixture(autouse=True)
def default_matmul_precision() -> Iterator[None]:
    yield
    torch.set_float32_matmul_precision("highest")


def test_matmul_precision_is_set_and_recorded(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "cfg.yaml", MTL, max_steps=2, trajectory=False)
    cli = run_cli(["--config", str(config), "--performance.matmul_precision=high"], tmp_path)
    assert torch.get_float32_matmul_precision() == "high"
    checkpoint = load_checkpoint(log_dir(cli) / "checkpoints" / "last.ckpt")
    assert checkpoint["multitask"]["run_config"]["performance.matmul_precision"] == "high"
    assert "matmul_precision: high" in (log_dir(cli) / "config.yaml").read_text()


def test_compiling_a_model_without_an_encoder_is_refused(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "cfg.yaml", MTL, max_steps=2, trajectory=False)
    with pytest.raises(ValueError, match=r"TinyTaskModel has no `encoder` module.*drop --performance.compile"):
        run_cli(["--config", str(config), "--performance.compile=true"], tmp_path)
