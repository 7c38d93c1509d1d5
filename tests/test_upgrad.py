"""configs/synthetic/upgrad.yaml, a method added as a config alone (torchjd's UPGrad through the Aggregator
adapter): it fits on the synthetic landscape and the registry names it."""

from __future__ import annotations

from pathlib import Path

from lightning_modules.algorithms import Aggregator, registry
from tests.helpers import SYNTHETIC, log_dir, read_trajectory, run_cli


def test_upgrad_config_fits_a_few_steps_towards_the_wells(tmp_path: Path) -> None:
    from torchjd.aggregation import UPGrad

    cli = run_cli(["--config", str(SYNTHETIC / "upgrad.yaml"), "--trainer.max_steps=5"], tmp_path)
    algorithm = cli.model.algorithm
    assert isinstance(algorithm, Aggregator) and isinstance(algorithm.aggregator, UPGrad)
    rows = read_trajectory(log_dir(cli) / "trajectory.csv")
    assert [r["step"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [r["task"] for r in rows[1:]] == ["all"] * 5  # 3 of 3 tasks each step
    xs = [float(r["x"]) for r in rows]
    assert xs[0] == 20.0 and all(b < a for a, b in zip(xs, xs[1:])), "moves from (20, 5) towards the wells"
    assert registry.labels()["upgrad"] == "UPGrad"
