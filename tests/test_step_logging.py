"""Per-step training values reach the logger at the steps Lightning writes logs at, with their own step numbers
and values, and nowhere else; a NaN loss found by the end-of-step check (on accelerators) still stops the run
naming the task and the step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback

from lightning_modules.errors import NonFiniteLossError
from tests.helpers import add_callback, log_dir, run_cli, tiny_config

SEQUENTIAL_REPTILE = {
    "class_path": "lightning_modules.algorithms.SequentialReptile",
    "init_args": {"inner_steps": 3, "outer_lr": 0.5, "q": 0.5},
}


class LossRecorder(Callback):
    """Every step's task and training loss, as the algorithm returned it (the values the logger should see), in a
    JSON file."""

    def __init__(self, path: str) -> None:
        self.path, self.losses = Path(path), []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self.losses.append((batch[0][0], float(outputs["loss"])))
        self.path.write_text(json.dumps(self.losses))


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_training_values_are_logged_at_logging_steps_only(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "cfg.yaml", SEQUENTIAL_REPTILE, max_steps=8, trajectory=False)
    record = tmp_path / "losses.json"
    recorder = add_callback("tests.test_step_logging.LossRecorder", path=str(record))
    cli = run_cli(["--config", str(config), "--trainer.log_every_n_steps=3", recorder], tmp_path)
    losses = [tuple(x) for x in json.loads(record.read_text())]
    logged = scalars(log_dir(cli))
    # Lightning writes at batches 3 and 6 (steps 2 and 5) and the last one (step 7) keeps callback_metrics current
    expected = {2: losses[2], 5: losses[5]}
    assert [step for step, _ in logged["train/loss"]] == sorted(expected)
    for step, value in logged["train/loss"]:
        task, loss = expected[step]
        assert value == pytest.approx(loss, rel=1e-6)
        assert (step, pytest.approx(loss, rel=1e-6)) in logged[f"train/{task}/loss"]
    assert sum(len(v) for k, v in logged.items() if k.startswith("train/")) == 4  # train/loss + one task, twice
    assert float(cli.trainer.callback_metrics["train/loss"]) == pytest.approx(losses[-1][1], rel=1e-6)


class CheckAtStepEnd(Callback):
    """Makes the module check the step's losses at its end, as it does on an accelerator."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pl_module.check_losses_at_step_end = True


def test_a_nan_loss_found_at_the_end_of_the_step_names_task_and_step(tmp_path: Path) -> None:
    n = 4
    config = tiny_config(tmp_path / "cfg.yaml", SEQUENTIAL_REPTILE, nan_at_step=n, trajectory=False)
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss \(nan\) on task '[ab]' at training step {n} "):
        run_cli(["--config", str(config), add_callback("tests.test_step_logging.CheckAtStepEnd")], tmp_path)
