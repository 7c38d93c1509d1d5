"""The compact results table that `train.py validate|test` prints instead of Lightning's per-dataloader one."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_modules.eval_summary import format_results
from tests.helpers import SYNTHETIC, log_dir, run_cli


def test_rows_are_tasks_then_their_averages_and_columns_the_metrics() -> None:
    values = {
        "test/en/loss": 0.5, "test/en/accuracy": 0.75, "test/ar/loss": 1.0, "test/ar/accuracy": 0.25,
        "test/es/loss": 2.0, "test/es/accuracy": 0.125,
        "test/avg/loss": 0.75, "test/avg/accuracy": 0.5, "test/zero_shot_avg/loss": 2.0,
        "test/zero_shot_avg/accuracy": 0.125, "val/en/loss": 9.0,
    }  # fmt: skip
    lines = format_results(values, "test", ["en", "ar", "ko"], ["es"]).splitlines()
    cells = [line.split() for line in lines if not line.startswith("-")]
    assert cells == [
        ["test", "loss", "accuracy"],
        ["en", "0.5000", "0.7500"],
        ["ar", "1.0000", "0.2500"],  # ko has no score: no row
        ["average", "(trained", "on)", "0.7500", "0.5000"],
        ["es", "2.0000", "0.1250"],
        ["average", "(zero-shot)", "2.0000", "0.1250"],
    ]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert format_results(values, "test", ["en"], []).count("zero-shot") == 0
    assert format_results({}, "test", ["en"], []) == ""


CONFIG = ["--config", str(SYNTHETIC / "mtl.yaml")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step fit's last checkpoint, fitted once: the tests only evaluate it."""
    fit_dir = log_dir(run_cli([*CONFIG, "--trainer.max_steps=2", "--trainer.limit_val_batches=0"],
                              tmp_path_factory.mktemp("fit")))  # fmt: skip
    return fit_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("verbose", [False, True])
def test_test_prints_one_compact_table_unless_verbose(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], verbose: bool
) -> None:
    capsys.readouterr()
    extra = ["--verbose=true"] if verbose else []
    cli = run_cli([*CONFIG, "--ckpt_path", str(checkpoint), *extra], tmp_path, "test")
    out = capsys.readouterr().out
    tasks = cli.model.task_names
    assert out.count("average (trained on)") == 1
    for task in tasks:
        loss = float(cli.trainer.callback_metrics[f"test/{task}/loss"])
        assert f"{loss:.4f}" in next(line for line in out.splitlines() if line.split()[:1] == [task])
    assert ("DataLoader 0" in out) == verbose  # Lightning's own table only on request
