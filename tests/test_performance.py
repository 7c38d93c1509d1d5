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


@pytest.mark.slow
def test_compiled_encoder_trains_as_the_eager_one(tmp_path: Path) -> None:
    """`performance.compile` on CPU (inductor, a C++ compiler): two Sequential Reptile steps through the tiny BERT
    give the eager update to float32 rounding (measured 1.8e-7), and the parameter names, so the checkpoints, are
    those of the eager model. Compiling takes about a minute, hence slow."""
    from tests.test_precision import StateAtStart, fit, flat

    updates, names = [], []
    for compile in (False, True):
        start = StateAtStart()
        trainer = fit("sequential_reptile", "32-true", tmp_path, "encoder", 2, callbacks=(start,), compile=compile)
        module = trainer.lightning_module
        updates.append(flat(module.trainable_parameters()) - flat(start.parameters))
        names.append(list(module.state_dict()))
    assert updates[0].norm() > 0
    assert float((updates[1] - updates[0]).norm() / updates[0].norm()) < 1e-5
    assert names[1] == names[0]
