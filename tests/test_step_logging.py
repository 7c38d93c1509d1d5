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


MTL = {"class_path": "lightning_modules.algorithms.MTL", "init_args": {"tasks_per_step": 2, "q": 0.5}}


@pytest.mark.parametrize("algorithm", [SEQUENTIAL_REPTILE, MTL], ids=["sequential_reptile", "mtl"])
def test_the_logger_receives_what_a_log_call_per_step_gives(
    algorithm: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deferred logging writes the same tags, steps and values as Lightning's own `log` on every step (the
    reference: deferral turned off), across an epoch boundary and with tasks missing from logging steps."""
    tasks = {"a": 24, "b": 40, "c": 16}
    runs = {}
    for mode in ("deferred", "per_step"):
        if mode == "per_step":
            monkeypatch.setattr("lightning_modules.multitask.deferrable", lambda *args: False)
        config = tiny_config(tmp_path / f"{mode}.yaml", algorithm, tasks=tasks, max_steps=14, trajectory=False)
        cli = run_cli(["--config", str(config), "--trainer.log_every_n_steps=4"], tmp_path / mode)
        runs[mode] = (scalars(log_dir(cli)), {k: float(v) for k, v in cli.trainer.callback_metrics.items()})
    (deferred, deferred_final), (reference, reference_final) = runs["deferred"], runs["per_step"]
    assert [step for step, _ in reference["train/loss"]] == [3, 7, 11]
    assert len([k for k in reference if k.startswith("train/")]) >= 3
    assert deferred == reference
    assert deferred_final["train/loss"] == reference_final["train/loss"]


def test_training_values_are_logged_at_logging_steps_only(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "cfg.yaml", SEQUENTIAL_REPTILE, max_steps=8, trajectory=False)
    record = tmp_path / "losses.json"
    recorder = add_callback("tests.test_step_logging.LossRecorder", path=str(record))
    cli = run_cli(["--config", str(config), "--trainer.log_every_n_steps=3", recorder], tmp_path)
    losses = [tuple(x) for x in json.loads(record.read_text())]
    logged = scalars(log_dir(cli))
    # Lightning writes at batches 3 and 6 (steps 2 and 5) and the last one (step 7) keeps callback_metrics current
    assert [step for step, _ in logged["train/loss"]] == [2, 5]
    for step, value in logged["train/loss"]:
        task, loss = losses[step]
        assert value == pytest.approx(loss, rel=1e-6)
        assert (step, pytest.approx(loss, rel=1e-6)) in logged[f"train/{task}/loss"]
    for tag, values in logged.items():  # a task's value at a logging step is its latest loss up to that step
        if tag.startswith("train/") and tag != "train/loss":
            task = tag.split("/")[1]
            for step, value in values:
                latest = [loss for t, loss in losses[: step + 1] if t == task][-1]
                assert value == pytest.approx(latest, rel=1e-6)
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
